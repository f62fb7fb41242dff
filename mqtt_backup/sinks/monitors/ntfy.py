"""ntfy: a notification on a topic, with a title, tags and a priority by how the run ended.

Title, priority and tags go in the topic URL's query (UTF-8 safe, unlike headers); the
message is the body. By default only problems are sent (config/monitors.py).
"""

from __future__ import annotations

from mqtt_backup.config.monitors import NtfyMonitor
from mqtt_backup.sinks.monitors.report import Report, Request, with_query

# ntfy turns a longer message into an attachment.
MAX_BODY = 3_900
# 1 min, 2 low, 3 default, 4 high, 5 max (urgent: long vibration, through do-not-disturb).
PRIORITY = {
    "started": 1,
    "completed": 2,
    "skipped": 2,
    "cancelled": 3,
    "warning": 4,
    "failed": 4,
    "interrupted": 4,
}
TAGS = {
    "started": "arrow_forward",
    "completed": "white_check_mark",
    "warning": "warning",
    "failed": "rotating_light",
    "cancelled": "stop_button",
    "interrupted": "rotating_light",
    "skipped": "fast_forward",
}


def request(monitor: NtfyMonitor, report: Report) -> Request:
    priority = monitor.priority or PRIORITY.get(report.ending, 3)
    tags = ",".join(t for t in (TAGS.get(report.ending), "backup") if t)
    url = with_query(
        monitor.target(report.job_id),
        {"title": report.title, "priority": str(priority), "tags": tags},
    )
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if monitor.token is not None:
        headers.append(("Authorization", f"Bearer {monitor.token.get_secret_value()}"))
    return Request("POST", url, tuple(headers), report.text(MAX_BODY).encode("utf-8"))
