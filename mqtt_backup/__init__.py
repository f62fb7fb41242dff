"""mqtt-backup: scheduled rclone backups with their state published to MQTT and Home Assistant."""

# The single source of the version (pyproject.toml reads it); a literal, because asking
# importlib.metadata costs every run-job ~40 ms of start-up.
__version__ = "0.1.0"
