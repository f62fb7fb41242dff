"""The stall watchdog: notices when rclone's stats stop moving, however long rclone would retry.

rclone retries a destination that went away for a very long time: its stats line keeps
coming every interval, with the same counters and 0 B/s. The watchdog reads those lines
and says the process is stalled once ``limit`` seconds passed without any counter going up.
It only fits rclone calls that print stats (``--stats``); a quiet listing would look stalled.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mqtt_backup.config.durations import format_duration

if TYPE_CHECKING:
    from mqtt_backup.config.models import JobConfig, RcloneConfig

# Counters of rclone's stats that only go up while work gets done: bytes moved, files
# compared, copied, deleted, renamed or copied server-side, and directory entries listed.
# Totals are left out: they also move when rclone gives up on a file.
PROGRESS_COUNTERS = (
    "bytes",
    "checks",
    "transfers",
    "deletes",
    "deletedDirs",
    "renames",
    "serverSideCopies",
    "serverSideMoves",
    "listed",
)


def counters(stats: Mapping[str, Any]) -> tuple[float, ...]:
    """The progress counters of one ``stats`` object; a field an older rclone lacks is 0."""
    values: list[float] = []
    for key in PROGRESS_COUNTERS:
        value = stats.get(key)
        values.append(value if isinstance(value, int | float) else 0)
    return tuple(values)


def moved(before: tuple[float, ...] | None, after: tuple[float, ...]) -> bool:
    """Whether any counter went up. A counter that drops (a retried file) is no progress."""
    if before is None:
        return any(after)
    return any(new > old for old, new in zip(before, after, strict=True))


class Watchdog:
    """Fed every stderr line of one rclone process; ``stalled()`` once progress stopped.

    ``feed`` runs on the reader thread and ``stalled`` on the waiting one: each only
    replaces whole values, which the interpreter does atomically.
    """

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        # Starting counts as progress: a process that never reports is stalled after limit.
        self._since = clock()
        self._last: tuple[float, ...] | None = None
        self.last_error: str | None = None

    def feed(self, line: str) -> None:
        """Look at one line of rclone's stderr; only stats lines matter."""
        if '"stats"' not in line:
            return
        data: Any = None
        with contextlib.suppress(ValueError):
            data = json.loads(line)
        stats = data.get("stats") if isinstance(data, dict) else None
        if isinstance(stats, dict):
            self.observe(stats)

    def observe(self, stats: Mapping[str, Any]) -> None:
        """Take one ``stats`` object: progress when a counter went up since the last one."""
        now = counters(stats)
        if moved(self._last, now):
            self._since = self._clock()
        self._last = now
        error = stats.get("lastError")
        if error:
            self.last_error = str(error)

    def idle(self) -> float:
        """Seconds since the last progress (or since the start)."""
        return self._clock() - self._since

    def stalled(self) -> bool:
        return self.idle() >= self.limit


def stall_limit(job: JobConfig, rclone: RcloneConfig) -> timedelta | None:
    """The job's stall_timeout, else the global one; None when switched off (0)."""
    limit = job.stall_timeout if job.stall_timeout is not None else rclone.stall_timeout
    return limit if limit > timedelta(0) else None


def stall_sentence(limit: timedelta, error: str | None) -> str:
    """The error of a stalled run; ``error`` must already be safe to publish."""
    because = f" (rclone: {error})" if error else ""
    return f"no progress for {format_duration(limit)}{because}; stopped"
