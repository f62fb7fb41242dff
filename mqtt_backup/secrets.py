"""Invariant 5: passwords and rclone connection-string secrets never reach payloads or logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from mqtt_backup.config import AppConfig

MASK = "***"

# rclone connection strings look like ":sftp,host=h,pass=SECRET:path" or "remote,token='{…}':path".
_PARAM = re.compile(
    r"(?P<key>[A-Za-z0-9_]*(?:pass|password|secret|token|key|credentials|sas_url|auth)"
    r"[A-Za-z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[^,:]*)",
    re.IGNORECASE,
)
# Flags such as --sftp-pass VALUE or --s3-secret-access-key=VALUE in extra_args.
_SECRET_FLAG = re.compile(r"^--[a-z0-9-]*(pass|password|secret|token|key|credentials)[a-z0-9-]*")


def connection_string_secrets(remote: str) -> set[str]:
    """The secret parameter values written into an rclone connection string."""
    head = remote.split(":", 2)
    params = ":".join(head[:2]) if remote.startswith(":") else head[0]
    values = set()
    for match in _PARAM.finditer(params):
        value = match.group("value").strip("'\"")
        if value:
            values.add(value)
    return values


def flag_secrets(args: Iterable[str]) -> set[str]:
    """Values given to secret-looking rclone flags (``--x-pass V`` or ``--x-pass=V``)."""
    values: set[str] = set()
    items = list(args)
    for i, arg in enumerate(items):
        if not _SECRET_FLAG.match(arg):
            continue
        if "=" in arg:
            values.add(arg.split("=", 1)[1])
        elif i + 1 < len(items):
            values.add(items[i + 1])
    return {v for v in values if v}


def secret_values(config: AppConfig) -> set[str]:
    """Every secret a config holds, to be masked wherever text leaves the process."""
    values: set[str] = set()
    if config.mqtt is not None:
        try:
            password = config.mqtt.resolved_password()
        except OSError:
            password = None
        if password:
            values.add(password)
    values |= flag_secrets(config.rclone.extra_args)
    for job in config.jobs.values():
        values |= connection_string_secrets(job.source)
        values |= connection_string_secrets(job.destination)
        values |= flag_secrets(job.extra_args)
    # Very short values would mask ordinary words; such secrets are too weak to guard anyway.
    return {v for v in values if len(v) >= 3}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_remote(remote: str) -> str:
    """A connection string safe to show: secret parameters masked."""
    return _PARAM.sub(lambda m: f"{m.group('key')}={MASK}", remote)


class RedactingFilter(logging.Filter):
    """Masks known secrets in every log record, whoever logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True
