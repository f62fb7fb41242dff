#!/usr/bin/env bash
# A real verify-then-delete backup from a temporary source to a temporary destination,
# with live progress, its final state printed, and (when mosquitto is installed) the
# retained state read back from a local broker as Home Assistant would see it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet '.[rclone]'
export PATH="$PWD/.venv/bin:$PATH"

demo=$(mktemp -d /tmp/mqtt-backup-demo.XXXXXX)
broker_pid=
cleanup() {
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT

# A small tree: nested folders, spaces, unicode, an empty file, and one larger file.
mkdir -p "$demo/source/photos/2026/été" "$demo/source/documents/tax returns"
for i in $(seq 1 200); do
    head -c $((RANDOM * 4)) /dev/urandom > "$demo/source/photos/2026/été/IMG_$i.jpg"
done
echo "keep me safe" > "$demo/source/documents/tax returns/2025 return.pdf"
: > "$demo/source/documents/empty file.txt"
head -c 64M /dev/urandom > "$demo/source/documents/archive.tar"

mqtt_block=""
mosquitto_bin=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
if [ -n "$mosquitto_bin" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$demo/mosquitto.conf"
    "$mosquitto_bin" -c "$demo/mosquitto.conf" >"$demo/mosquitto.log" 2>&1 &
    broker_pid=$!
    sleep 0.5
    mqtt_block="mqtt: {host: 127.0.0.1, port: $port, progress_interval: 1s}"
else
    echo "(mosquitto is not installed: the demo runs without MQTT; state is kept in local history)"
fi

cat > "$demo/mqtt-backup.yaml" <<YAML
instance: demo
state_dir: $demo/state
$mqtt_block
jobs:
  photos:
    name: Photos and documents
    source: $demo/source
    destination: $demo/backup
    operation: copy
    extra_args: ["--bwlimit", "32M"]   # slow enough to watch the progress bar
    deletion:
      mode: verify_then_delete
      verify: checksum
YAML

echo "== mqtt-backup run-job photos  (copy, verify by checksum, delete verified source files)"
mqtt-backup -c "$demo/mqtt-backup.yaml" run-job photos
echo
echo "== files left in the source (folders are kept): $(find "$demo/source" -type f | wc -l)"
echo "== files in the backup: $(find "$demo/backup" -type f | wc -l)"
echo
echo "== mqtt-backup status  (read back $( [ -n "$broker_pid" ] && echo 'from the broker, retained' || echo 'from local history'))"
mqtt-backup -c "$demo/mqtt-backup.yaml" status
if [ -n "$broker_pid" ] && command -v mosquitto_sub >/dev/null 2>&1; then
    echo
    echo "== the retained state a late subscriber (Home Assistant) receives:"
    mosquitto_sub -h 127.0.0.1 -p "$port" -t 'mqtt_backup/demo/jobs/+/state' -C 1 -W 3 -v
fi
