"""Logging set up once per process: one line per event, secrets masked in every handler."""

from __future__ import annotations

import logging
import sys

from mqtt_backup.redaction.secrets import RedactingFilter, Secrets

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup(level: str = "INFO", secrets: Secrets | None = None) -> RedactingFilter:
    """Log to stderr at ``level``; returns the filter so new secrets can be added on reload."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler logs every run it starts and ends at INFO ("Running job …", "executed
    # successfully"), beside our own line per run: keep only its warnings, at any level.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
    return redactor
