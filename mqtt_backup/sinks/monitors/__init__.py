"""Monitors: each run's start and end, pinged to dead-man's switches and notifiers.

One module per kind turns a run into an HTTP request (``healthchecks``, ``uptime_kuma``,
``ntfy``, ``webhook``: pure); ``sink.MonitorSink`` puts the requests in the ``outbox``,
which delivers them on its own threads (``http``), retries them, and keeps them across
restarts. ``Monitors`` wires the two for ``serve`` and ``run-job``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqtt_backup.config.models import AppConfig
    from mqtt_backup.sinks.monitors.outbox import Outbox
    from mqtt_backup.sinks.monitors.sink import MonitorSink

logger = logging.getLogger(__name__)

# In state_dir: the pings waiting for delivery (outbox.py).
OUTBOX_FILE = "outbox.sqlite3"


class Monitors:
    """The outbox and its sink, for one process; ``open`` returns None when there is nothing
    to do (no monitor configured and no outbox left by an earlier configuration)."""

    def __init__(self, outbox: Outbox, sink: MonitorSink) -> None:
        self.outbox = outbox
        self.sink = sink

    @classmethod
    def open(cls, config: Callable[[], AppConfig]) -> Monitors | None:
        """Open the outbox and start delivering; a broken outbox is logged, never raised."""
        current = config()
        if not current.has_monitors() and not (current.state_dir / OUTBOX_FILE).exists():
            return None  # nothing to import either: a run-job without monitors pays nothing
        from mqtt_backup.sinks.monitors.outbox import Outbox
        from mqtt_backup.sinks.monitors.sink import MonitorSink

        outbox = Outbox(current.state_dir, lambda: config().monitor_delivery)
        try:
            outbox.open()
        except (sqlite3.Error, OSError) as exc:
            logger.error("monitors are off: the outbox %s cannot be used (%s)", outbox.path, exc)
            return None
        outbox.start()
        return cls(outbox, MonitorSink(outbox, config))

    def close(self, flush: float) -> None:
        """Wait up to ``flush`` seconds for this process's pings, then stop; what is left
        waits in the outbox for the next ``serve`` or ``run-job``."""
        if not self.outbox.flush(flush):
            logger.info("monitor pings not delivered yet wait for the next serve or run-job")
        self.outbox.stop(timeout=0.5)
