# mqtt-backup: scheduled rclone backups whose state is published to MQTT / Home Assistant.
#
#   docker build -t mqtt-backup .
#   docker run --init -v ./config:/config -v mqtt-backup-state:/state -v /srv:/data:ro mqtt-backup
#
# rclone comes from its official release zip, pinned by version and SHA-256 (the sums are
# those of the release's signed SHA256SUMS file). Bump both together.

FROM python:3.12-slim AS rclone

ARG RCLONE_VERSION=v1.75.1
ARG RCLONE_SHA256_AMD64=982b5aa772841168f8e380f139e9e787b2a105403e32b94da8676a0e1c0a13ab
ARG RCLONE_SHA256_ARM64=03f2504174034b6d004152ed7369251c9a9ec1f7e0836eda420f5c7a5ec0dff9
ARG TARGETARCH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python's own urllib and zipfile: no curl or unzip packages to install and pin.
RUN arch="${TARGETARCH:-amd64}"; \
    case "$arch" in \
      amd64) sha="$RCLONE_SHA256_AMD64" ;; \
      arm64) sha="$RCLONE_SHA256_ARM64" ;; \
      *) echo "no pinned rclone checksum for architecture $arch" >&2; exit 1 ;; \
    esac; \
    url="https://downloads.rclone.org/${RCLONE_VERSION}/rclone-${RCLONE_VERSION}-linux-${arch}.zip"; \
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "$url" /tmp/rclone.zip; \
    echo "${sha}  /tmp/rclone.zip" | sha256sum -c -; \
    python -m zipfile -e /tmp/rclone.zip /tmp/rclone; \
    install -m 0755 "/tmp/rclone/rclone-${RCLONE_VERSION}-linux-${arch}/rclone" /usr/local/bin/rclone; \
    rm -rf /tmp/rclone /tmp/rclone.zip; \
    rclone version


FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=rclone /usr/local/bin/rclone /usr/local/bin/rclone

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY mqtt_backup ./mqtt_backup
# tzdata: the slim image has no /usr/share/zoneinfo, and `timezone:` or TZ need the zone files.
RUN pip install --no-cache-dir . tzdata==2026.6 && rm -rf /src

# A fixed uid, so host folders can be chowned to it (1000 is the usual first user).
RUN useradd --system --uid 1000 --user-group --home-dir /state --shell /usr/sbin/nologin mqtt-backup \
    && mkdir -p /config/rclone /state /data \
    && chown mqtt-backup:mqtt-backup /state

# /config: mqtt-backup.yaml; /config/rclone: rclone.conf; /state: history, locks, heartbeat;
# /data: what to back up (or where to). HOME=/state gives rclone a writable cache folder.
# As a Home Assistant add-on, /config is the add-on's config folder and /data its storage.
# /config/rclone is no volume of its own: an anonymous one would hide the rclone folder of
# a /config mounted from the host, as the add-on's is.
ENV MQTT_BACKUP_CONFIG=/config/mqtt-backup.yaml \
    MQTT_BACKUP_STATE_DIR=/state \
    RCLONE_CONFIG=/config/rclone/rclone.conf \
    HOME=/state
VOLUME ["/config", "/state", "/data"]

# MQTT_BACKUP_STATE_DIR: a config that sets no state_dir keeps its state in /state, not
# beside the (read-only) config in /config.
WORKDIR /
# No USER: the entrypoint runs the command as uid 1000 (or as --user says), except as a Home
# Assistant add-on, whose folders belong to root. `docker exec` skips the entrypoint: give
# it --user 1000 (compose's `user:` does that by itself).
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]

# serve writes state_dir/heartbeat every 5 s; the check fails once it is 20 s old or serve's
# pid is gone. serve handles SIGTERM itself (it is safe as PID 1); --init adds zombie reaping.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["mqtt-backup", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["mqtt-backup", "serve"]
