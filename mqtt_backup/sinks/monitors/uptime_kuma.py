"""Uptime Kuma push monitors: ``status=up`` for a completed run, ``down`` for a problem.

A push monitor goes down by itself when no push came within its heartbeat interval, so a
start is not pushed (it would count as a heartbeat), nor a cancelled or skipped run. The
URL may be pasted as Kuma shows it, ``?status=up&msg=OK&ping=`` included: those values are
replaced.
"""

from __future__ import annotations

from mqtt_backup.config.monitors import UptimeKumaMonitor
from mqtt_backup.sinks.monitors.report import Report, Request, cut, with_query

STATUS = {"completed": "up", "warning": "down", "failed": "down", "interrupted": "down"}
MAX_MESSAGE = 400


def request(monitor: UptimeKumaMonitor, report: Report) -> Request | None:
    status = STATUS.get(report.ending)
    if status is None:
        return None
    values = {"status": status, "msg": cut(report.message, MAX_MESSAGE), "ping": ""}
    return Request("GET", with_query(monitor.target(report.job_id), values))
