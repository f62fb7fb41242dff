"""Webhooks: a JSON POST of the run's state, or of a body of your own with fields filled in.

Without ``body`` the receiver (n8n, Node-RED, Home Assistant, a script) gets the retained
state payload plus ``ending``, ``title``, ``message`` and ``log_tail``. With ``body``
(Gotify, Discord, Slack, Teams, …) every ``{field}`` in its text is filled in.
"""

from __future__ import annotations

import json
from typing import Any

from mqtt_backup.config.monitors import WebhookMonitor, fill
from mqtt_backup.sinks.monitors.report import Report, Request, cut

# Discord refuses more than 2,000 characters of content; the log has its own field.
MAX_MESSAGE = 1_500
MAX_LOG = 4_000


def fields(report: Report) -> dict[str, str]:
    """What ``{name}`` stands for in a body."""
    return {
        "job": report.job_id,
        "name": report.state.name or report.job_id,
        "status": report.state.status,
        "ending": report.ending,
        "title": report.title,
        "message": cut(report.message, MAX_MESSAGE),
        "log": cut("\n".join(report.log_tail), MAX_LOG),
        "run_id": report.run_id,
        "exit_code": "" if report.exit_code is None else str(report.exit_code),
    }


def payload(monitor: WebhookMonitor, report: Report) -> Any:
    if monitor.body is None:
        state = json.loads(report.state.to_json())
        return state | {
            "ending": report.ending,
            "title": report.title,
            "message": report.message,
            "exit_code": report.exit_code,
            "log_tail": list(report.log_tail),
        }
    return _filled(monitor.body, fields(report))


def _filled(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, dict):
        return {_filled(k, values): _filled(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    return value


def request(monitor: WebhookMonitor, report: Report) -> Request:
    body = json.dumps(payload(monitor, report), ensure_ascii=False).encode("utf-8")
    headers = dict(monitor.headers)
    if not any(name.lower() == "content-type" for name in headers):
        headers = {"Content-Type": "application/json", **headers}
    return Request("POST", monitor.target(report.job_id), tuple(headers.items()), body)
