"""One small hierarchy of errors, each carrying a sentence a user can act on."""

from __future__ import annotations


class MqttBackupError(Exception):
    """Base of every error mqtt-backup raises on purpose."""


class ConfigError(MqttBackupError):
    """The configuration is invalid; ``errors`` lists every problem by key path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class RcloneError(MqttBackupError):
    """rclone could not be run or answered something unusable."""


class RcloneNotFound(RcloneError):
    """The rclone binary does not exist or is not executable."""


class ProgramNotStarted(MqttBackupError):
    """A program other than rclone (a hook) does not exist or cannot be executed."""


class JobBusy(MqttBackupError):
    """The job is already running (in this process or another one)."""


class MqttError(MqttBackupError):
    """The broker refused us or could not be reached."""


class InstanceOwned(MqttError):
    """Another live ``serve`` holds this instance id on the broker."""
