"""The daemon's heartbeat file, and the healthcheck that reads it (container HEALTHCHECK)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqtt_backup.jobs.state import iso

logger = logging.getLogger(__name__)

INTERVAL = 5.0
# Several missed beats before "unhealthy": a busy 2-core host may delay one or two.
MAX_AGE = timedelta(seconds=INTERVAL * 4)
STOPPED = "stopped"


def heartbeat_path(state_dir: Path) -> Path:
    return Path(state_dir) / "heartbeat"


@dataclass(frozen=True, slots=True)
class Beat:
    at: datetime
    pid: int
    stopped: bool


def read_beat(state_dir: Path) -> Beat | None:
    """The last beat written, or None when there is none or it cannot be read."""
    try:
        fields = heartbeat_path(state_dir).read_text(encoding="utf-8").split()
        at = datetime.fromisoformat(fields[0].replace("Z", "+00:00"))
        pid = int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        return None
    return Beat(at, pid, STOPPED in fields[2:])


def _write(state_dir: Path, stopped: bool = False) -> None:
    path = heartbeat_path(state_dir)
    line = f"{iso(datetime.now(UTC), 'milliseconds')} {os.getpid()}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(line + (f" {STOPPED}" if stopped else "") + "\n", encoding="utf-8")
    # Atomic: the healthcheck never reads a half-written line.
    tmp.replace(path)


class Heartbeat:
    """Writes ``state_dir/heartbeat`` (timestamp and pid) every few seconds while ``alive()``."""

    def __init__(
        self, state_dir: Path, alive: Callable[[], bool], interval: float = INTERVAL
    ) -> None:
        self._state_dir = Path(state_dir)
        self._alive = alive
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._beat()
        self._thread = threading.Thread(target=self._run, name="mqtt-backup-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and mark the file as stopped: the healthcheck fails at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._interval + 1)
            self._thread = None
        try:
            _write(self._state_dir, stopped=True)
        except OSError as exc:
            logger.warning("cannot write the heartbeat file: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def _beat(self) -> None:
        # A wedged scheduler stops the beats, so the container is reported unhealthy.
        if not self._alive():
            logger.warning("the scheduler is not running; heartbeat withheld")
            return
        try:
            _write(self._state_dir)
        except OSError as exc:
            logger.warning("cannot write the heartbeat file: %s", exc)


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def check(state_dir: Path, now: datetime | None = None) -> str | None:
    """Why the daemon of this state_dir is not healthy, or None when it is."""
    path = heartbeat_path(state_dir)
    beat = read_beat(state_dir)
    if beat is None:
        return f"no heartbeat in {path}: is mqtt-backup serve running?"
    if beat.stopped:
        return f"mqtt-backup serve (pid {beat.pid}) stopped at {iso(beat.at)}"
    age = (now or datetime.now(UTC)) - beat.at
    if age > MAX_AGE:
        return f"the last heartbeat is {age.total_seconds():.0f}s old ({path})"
    if -age > MAX_AGE:
        # The clock was set back after this beat. A live serve's next beat, seconds later,
        # carries the new time; one that wedged must not pass for healthy until the clock
        # catches up with its last beat, which may be hours away.
        ahead = -age.total_seconds()
        return f"the last heartbeat is dated {ahead:.0f}s ahead of the clock ({path})"
    if not pid_alive(beat.pid):
        return f"mqtt-backup serve (pid {beat.pid}) is not running"
    return None
