"""mqtt-backup: scheduled rclone backups with their state published to MQTT and Home Assistant."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mqtt-backup")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
