"""Pure parsing of rclone's stderr: one line becomes a Progress, a LogLine or nothing.

rclone writes one JSON object per line under ``--use-json-log``, but not always:
1.60 prints its final ``Failed to copy: …`` as plain text, logs NOTICE as level
``warning`` and reports fewer stats fields. Parsing is lenient: whatever is not
understood becomes a plain LogLine rather than an error.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from mqtt_backup.engine.events import Progress

_LEVELS = {"warning": "notice", "warn": "notice", "fatal": "critical", "emergency": "critical"}
_TEXT_PREFIX = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? ")
_TEXT_LEVEL = re.compile(r"^(DEBUG|INFO|NOTICE|ERROR|CRITICAL|WARNING)\s*:\s?")


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line of rclone's log that is not a stats report."""

    level: str
    message: str
    object: str | None = None
    json: bool = True


def _int(stats: dict[str, Any], key: str) -> int:
    value = stats.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _float(stats: dict[str, Any], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def progress_from_stats(stats: dict[str, Any]) -> Progress:
    """A Progress from rclone's ``stats`` object; missing fields count as zero."""
    eta = stats.get("eta")
    last_error = stats.get("lastError")
    return Progress(
        bytes=_int(stats, "bytes"),
        total_bytes=_int(stats, "totalBytes"),
        speed=_float(stats, "speed"),
        eta=float(eta) if isinstance(eta, int | float) else None,
        files=_int(stats, "transfers"),
        total_files=_int(stats, "totalTransfers"),
        errors=_int(stats, "errors"),
        deletes=_int(stats, "deletes"),
        last_error=str(last_error) if last_error else None,
    )


def _normal_level(level: str) -> str:
    level = level.strip().lower()
    return _LEVELS.get(level, level)


def _plain(line: str) -> LogLine:
    text = _TEXT_PREFIX.sub("", line, count=1)
    level = "notice"
    found = _TEXT_LEVEL.match(text)
    if found:
        level = _normal_level(found.group(1))
        text = text[found.end() :]
    if text.startswith(("Failed to ", "Fatal error")):
        # 1.60's last words carry no level, and a refused command line ends with
        # "NOTICE: Fatal error: unknown flag: --x": either is the run's failure reason.
        level, text = "critical", text.removeprefix("Fatal error: ")
    elif text.startswith("Error: "):
        # Command line errors, printed before logging is set up.
        level, text = "error", text.removeprefix("Error: ")
    return LogLine(level=level, message=text.strip(), json=False)


def parse_line(line: str) -> Progress | LogLine | None:
    """One stderr line of rclone → Progress (stats), LogLine (anything else) or None (blank)."""
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        data: Any = None
        with contextlib.suppress(json.JSONDecodeError, ValueError):
            data = json.loads(line)
        if isinstance(data, dict):
            stats = data.get("stats")
            if isinstance(stats, dict):
                return progress_from_stats(stats)
            obj = data.get("object")
            return LogLine(
                level=_normal_level(str(data.get("level", "notice"))),
                message=str(data.get("msg", "")).strip(),
                object=str(obj) if obj is not None else None,
            )
    return _plain(line)
