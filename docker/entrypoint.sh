#!/bin/sh
# Runs the command as the unprivileged mqtt-backup user (uid 1000), unless the container
# was started with --user already, or as a Home Assistant add-on: the Supervisor runs
# add-ons as root and mounts /data, /config, /backup, /share and /media owned by root.
set -eu
if [ "$(id -u)" = 0 ] && [ -z "${SUPERVISOR_TOKEN:-}" ]; then
    exec setpriv --reuid=1000 --regid=1000 --clear-groups -- "$@"
fi
exec "$@"
