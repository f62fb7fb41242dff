"""Pure: what a monitor is told about a run (``Report``), and the HTTP request it becomes.

Each kind (healthchecks.py, uptime_kuma.py, ntfy.py, webhook.py) turns a ``Report`` into a
``Request``; nothing here does I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from mqtt_backup.jobs.state import JobState
from mqtt_backup.sinks.terminal import summary

USER_AGENT = "mqtt-backup"

_TITLES = {
    "started": "started",
    "completed": "completed",
    "warning": "completed with a warning",
    "failed": "failed",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted",
    "skipped": "was skipped",
}


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, as stored in the outbox and sent by http.py."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A run's start or end, as every monitor kind sees it."""

    ending: str
    state: JobState

    @property
    def job_id(self) -> str:
        return self.state.job_id

    @property
    def run_id(self) -> str:
        return self.state.run_id or ""

    @property
    def title(self) -> str:
        """``Backup Photos failed``."""
        how = _TITLES.get(self.ending, f"ended {self.ending}")
        return f"Backup {self.state.name or self.job_id} {how}"

    @property
    def message(self) -> str:
        """One line: how the run ended, its sizes and its error (masked)."""
        if self.ending == "started":
            trigger = f" ({self.state.trigger})" if self.state.trigger else ""
            return f"{self.job_id}: run {self.run_id} started{trigger}"
        return summary(self.state)

    @property
    def exit_code(self) -> int | None:
        return self.state.exit_code

    @property
    def log_tail(self) -> tuple[str, ...]:
        return self.state.log_tail if self.ending != "started" else ()

    def text(self, max_bytes: int) -> str:
        """The message, rclone's exit status and its last log lines, in ``max_bytes``.

        The oldest log lines go first when it does not fit, then the end of the message.
        """
        head = [self.message]
        if self.ending != "started" and self.exit_code not in (None, 0):
            head.append(f"rclone exit status {self.exit_code}")
        lines = list(self.log_tail)
        while True:
            body = "\n".join(head + (["", "rclone's last log lines:", *lines] if lines else []))
            if fits(body, max_bytes) or not lines:
                return cut(body, max_bytes)
            lines.pop(0)


def ending_of(state: JobState) -> str:
    """How a finished run ended: its status, with a completed run that left a warning apart."""
    if state.status == "completed" and state.error:
        return "warning"
    return state.status


def fits(text: str, max_bytes: int) -> bool:
    return len(text.encode("utf-8")) <= max_bytes


def cut(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` of UTF-8, ending in ``…`` when cut."""
    if fits(text, max_bytes):
        return text
    data = text.encode("utf-8")[: max(0, max_bytes - 3)]
    return data.decode("utf-8", "ignore") + "…"


def add_path(url: str, folder: str) -> str:
    """``url`` with ``/folder`` added to its path, before any query."""
    if not folder:
        return url
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + quote(folder, safe="")
    return urlunsplit(parts._replace(path=path))


def with_query(url: str, values: dict[str, str]) -> str:
    """``url`` with these query values set; other values it holds are kept."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query = urlencode([*kept, *values.items()], quote_via=quote)
    return urlunsplit(parts._replace(query=query))


def split_credentials(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A URL's ``user:password@`` as a Basic Authorization header; urllib would not send it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, ()
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=netloc)), (("Authorization", f"Basic {token}"),)
