"""Healthchecks.io (or a self-hosted Healthchecks): a run's start and end as pings.

``/start`` when a run begins, the check's own URL when it completed, ``/<exit status>`` of
rclone or ``/fail`` when it failed, ``/fail`` for a warning or an interrupted run, and
``/log`` for a cancelled or skipped one: those are no success, so the check's timer runs on
and it goes down if no success follows in time. ``rid`` pairs a start with its end.
"""

from __future__ import annotations

import uuid

from mqtt_backup.config.monitors import HealthchecksMonitor
from mqtt_backup.sinks.monitors.report import Report, Request, add_path, with_query

# Healthchecks.io keeps 100 kB of a ping's body; a self-hosted one 10 kB by default.
MAX_BODY = 10_000
# Any name would do: it only turns a run id into the UUID that ``rid`` wants.
_RUNS = uuid.UUID("6f1c2b9e-4a57-4d4e-9a55-0b6b8d7f3c21")


def folder(report: Report) -> str:
    """The ping's endpoint below the check's URL: "" (success), start, fail, log or 1-255."""
    ending = report.ending
    if ending == "started":
        return "start"
    if ending == "completed":
        return ""
    if ending == "failed" and report.exit_code is not None and 0 < report.exit_code < 256:
        return str(report.exit_code)
    if ending in ("failed", "warning", "interrupted"):
        return "fail"
    # cancelled, skipped, and any ending a later version adds: said, but no success.
    return "log"


def run_uuid(run_id: str) -> str:
    return str(uuid.uuid5(_RUNS, run_id))


def request(monitor: HealthchecksMonitor, report: Report) -> Request:
    url = add_path(monitor.target(report.job_id), folder(report))
    if report.run_id:
        url = with_query(url, {"rid": run_uuid(report.run_id)})
    body = report.text(MAX_BODY).encode("utf-8")
    return Request("POST", url, (("Content-Type", "text/plain; charset=utf-8"),), body)
