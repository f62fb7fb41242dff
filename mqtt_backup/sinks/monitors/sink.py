"""The monitors as one sink: each run's start and end become pings in the outbox.

The sink only builds requests (pure, per kind) and puts them in the outbox; the outbox's
own threads do the HTTP. A dry run is never reported: it backed nothing up, so it must
neither reset a dead-man's switch nor raise an alarm.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from urllib.parse import urlsplit

from mqtt_backup.config.models import AppConfig
from mqtt_backup.config.monitors import (
    HealthchecksMonitor,
    Monitor,
    NtfyMonitor,
    UptimeKumaMonitor,
    WebhookMonitor,
)
from mqtt_backup.jobs.state import JobState, utcnow
from mqtt_backup.sinks import Sink
from mqtt_backup.sinks.monitors import healthchecks, ntfy, uptime_kuma, webhook
from mqtt_backup.sinks.monitors.outbox import Outbox
from mqtt_backup.sinks.monitors.report import Report, Request, ending_of
from mqtt_backup.sinks.monitors.store import Ping

logger = logging.getLogger(__name__)


def build(monitor: Monitor, report: Report) -> Request | None:
    """The request that tells ``monitor`` of ``report``; None when it has nothing to say."""
    if isinstance(monitor, HealthchecksMonitor):
        return healthchecks.request(monitor, report)
    if isinstance(monitor, UptimeKumaMonitor):
        return uptime_kuma.request(monitor, report)
    if isinstance(monitor, NtfyMonitor):
        return ntfy.request(monitor, report)
    if isinstance(monitor, WebhookMonitor):
        return webhook.request(monitor, report)
    raise TypeError(f"no requests for {type(monitor).__name__}")


def pings(config: AppConfig, report: Report) -> list[Ping]:
    """What the job's monitors are to be told of ``report``, in the order they are listed."""
    found: list[Ping] = []
    for entry in config.job_monitors(report.job_id):
        monitor = entry.monitor
        if not monitor.reports(report.ending):
            continue
        request = build(monitor, report)
        if request is None:
            continue
        target = monitor.target(report.job_id)
        # One queue per receiver (the same URL from a global and a job entry is one), so
        # its pings keep their order and each one is sent once.
        queue = hashlib.sha256(f"{monitor.kind} {target}".encode()).hexdigest()[:24]
        host = urlsplit(target).hostname or "?"
        label = f"the {monitor.kind} {report.ending} ping of job {report.job_id} ({host})"
        key = f"{queue}:{report.run_id}:{report.ending}"
        found.append(Ping(queue, key, label, request))
    return found


class MonitorSink(Sink):
    """Reports runs to the monitors of ``config()`` (read at each run, so a reload applies)."""

    name = "monitors"

    def __init__(self, outbox: Outbox, config: Callable[[], AppConfig]) -> None:
        self._outbox = outbox
        self._config = config

    def run_started(self, state: JobState) -> None:
        self._report(state, "started")

    def state_changed(self, state: JobState) -> None:
        # Crash recovery marks a dead process's run interrupted without a run_finished.
        if state.status == "interrupted":
            self._report(state, "interrupted")

    def run_finished(self, state: JobState) -> None:
        self._report(state, ending_of(state))

    def _report(self, state: JobState, ending: str) -> None:
        if state.dry_run or not state.run_id:
            return
        config = self._config()
        if state.job_id not in config.jobs:
            return
        finished = state.finished_at if ending != "started" else None
        if finished is not None and utcnow() - finished > config.monitor_delivery.max_age:
            # Older than any ping the outbox remembers having sent: an old interrupted
            # state read back from the history, not news.
            return
        for ping in pings(config, Report(ending, state)):
            try:
                self._outbox.put(ping)
            except sqlite3.Error as exc:
                logger.warning("%s could not be stored in the outbox: %s", ping.label, exc)
