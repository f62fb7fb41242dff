"""What one run carries between its steps: the job, the deadline, the cancel flag, a work dir."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine import commands, process, sums
from mqtt_backup.engine.events import Event, ProcessStarted, Progress
from mqtt_backup.engine.redact import masked_lines, reason
from mqtt_backup.engine.stats import LogLine, parse_line
from mqtt_backup.engine.watchdog import Watchdog, stall_limit, stall_sentence

logger = logging.getLogger(__name__)

# Lines that say a run failed but not why: the reason was logged just before them.
_GENERIC = "Fatal error received"
# rclone's last log lines kept for a run's end (its monitors' pings show them).
LOG_TAIL = 20


def is_failure(line: LogLine) -> bool:
    """An error line, or rclone's closing "Failed to copy: …" (a NOTICE since 1.61)."""
    return bool(line.message) and (
        line.level in ("error", "critical") or line.message.startswith("Failed to ")
    )


@dataclass(slots=True)
class RunContext:
    """One run's settings and shared state.

    ``conn`` and ``env`` are what the sealed calls (listings, hashsum, checksum, check,
    repair, delete, probes) get instead of the user's flags and environment
    (engine/sealed.py).
    """

    job_id: str
    job: JobConfig
    rclone: RcloneConfig
    on_event: Callable[[Event], None]
    cancel: threading.Event
    run_dir: Path
    version: tuple[int, int, int]
    deadline: float | None = None
    conn: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    last_error: str | None = field(default=None)
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    # Each side's hash types, asked once per run: remote → types, or None when rclone would
    # not say. Shared with the contexts of calls on other threads (``beside``).
    known_hashes: dict[str, set[str] | None] = field(default_factory=dict)

    def hidden(self) -> list[str]:
        """Strings that must never reach an error: both paths and their remote parts."""
        values = [self.job.source, self.job.destination]
        for value in (self.job.source, self.job.destination):
            remote, sep, _ = value.rpartition(":")
            if sep and remote:
                values.append(remote + ":")
        return values

    def beside(self) -> RunContext:
        """This run's context for calls on another thread: the same run, its own last error."""
        return replace(self, last_error=None)

    def explain(self, message: str) -> str:
        return reason(message, self.hidden())

    def masked_tail(self) -> tuple[str, ...]:
        """rclone's last notices and errors of this run, masked like every error."""
        return masked_lines(self.log_tail, self.hidden())

    def log_line(self, line: str) -> LogLine | None:
        """Log one rclone line at DEBUG and remember the last error it reported."""
        parsed = parse_line(line)
        if isinstance(parsed, LogLine):
            logger.debug("rclone [%s]: %s", self.job_id, line)
            if parsed.message and parsed.level not in ("debug", "info"):
                where = f"{parsed.object}: " if parsed.object else ""
                self.log_tail.append(f"{parsed.level.upper()}: {where}{parsed.message}")
            if is_failure(parsed) and not parsed.message.startswith(_GENERIC):
                self.last_error = parsed.message
            return parsed
        return None

    def run(
        self,
        argv: list[str],
        step: str,
        *,
        on_line: Callable[[str], object] | None = None,
        stdout_path: Path | None = None,
        sealed: bool = True,
        watch: bool = False,
        started: Callable[[], None] | None = None,
    ) -> process.ProcessResult:
        """Run one rclone call of this run; only the transfer passes ``sealed=False``.

        ``watch`` puts the stall watchdog on the call: only for calls that print stats.
        ``started`` is called once rclone runs.
        """
        self.last_error = None

        def on_start(pid: int, start_time: int) -> None:
            self.process_started(pid, start_time)
            if started is not None:
                started()

        return process.run(
            argv,
            on_line=on_line or self.log_line,
            cancel=self.cancel,
            deadline=self.deadline,
            stdout_path=stdout_path,
            name=f"rclone-{self.job_id}-{step}",
            env=self.env if sealed else None,
            watchdog=self.watchdog() if watch else None,
            on_start=on_start,
        )

    # The stall watchdog and the record of rclone processes: see engine/watchdog.py and
    # engine/orphans.py.

    def watchdog(self) -> Watchdog | None:
        limit = stall_limit(self.job, self.rclone)
        return Watchdog(limit.total_seconds()) if limit is not None else None

    def process_started(self, pid: int, started: int) -> None:
        self.on_event(ProcessStarted(pid, started))

    def stalled(self, result: process.ProcessResult, error: str | None) -> str:
        """The error of a run stopped by the watchdog, naming rclone's last error."""
        limit = stall_limit(self.job, self.rclone)
        assert limit is not None  # noqa: S101 - only a watched call can stall
        error = error or result.stats_error
        return stall_sentence(limit, self.explain(error) if error else None)

    def reported(self, progress: Progress) -> Progress:
        """``progress`` with rclone's last error masked, as the state may show it while running."""
        if progress.last_error is None:
            return progress
        return replace(progress, last_error=self.explain(progress.last_error))

    def remaining(self, default: float = 60.0) -> float:
        if self.deadline is None:
            return default
        return max(0.1, min(default, self.deadline - time.monotonic()))

    def hashes(self, remote: str, cancel: threading.Event | None = None) -> set[str] | None:
        """The hash types ``remote`` supports, or None when rclone would not say.

        Asked once per run and side. With ``cancel``, setting it stops the question.
        """
        if remote in self.known_hashes:
            return self.known_hashes[remote]
        found = self._ask_hashes(remote, cancel)
        if cancel is None or not cancel.is_set():
            self.known_hashes[remote] = found
        return found

    def _ask_hashes(self, remote: str, cancel: threading.Event | None) -> set[str] | None:
        argv = commands.features_command(self.rclone, remote, self.conn)
        if cancel is None:
            code, out = process.run_capture(argv, timeout=self.remaining(), env=self.env)
        else:
            path = self.run_dir / f"features-{uuid.uuid4().hex}.json"
            result = process.run(
                argv,
                on_line=lambda _line: None,  # only the answer counts; None says rclone had none
                cancel=cancel,
                deadline=time.monotonic() + self.remaining(),
                stdout_path=path,
                name=f"rclone-{self.job_id}-features",
                env=self.env,
                on_start=self.process_started,
            )
            code = -1 if result.cancelled or result.timed_out else result.returncode
            out = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if code != 0:
            return None
        try:
            found = json.loads(out).get("Hashes")
        except (ValueError, AttributeError):
            return None
        return {str(name) for name in found} if isinstance(found, list) else None

    def no_common_hash(self) -> bool:
        """True only when both sides answered and they share no hash type."""
        if _is_local(self.job.source) and _is_local(self.job.destination):
            return False  # the local backend has every hash type; asking costs two processes
        source, destination = self.hashes(self.job.source), self.hashes(self.job.destination)
        if source is None or destination is None:
            return False
        return not (source & destination)

    def sum_hash(self, cancel: threading.Event | None = None) -> str | None:
        """The hash type both sides are hashed by once, as ``rclone check`` would choose it.

        None when rclone would not say which types a side has, or none is one that
        engine/sums.py reads: then the verification compares with ``rclone check``.
        """
        if _is_local(self.job.source) and _is_local(self.job.destination):
            return "md5"  # the local backend has every type; rclone check picks md5 first
        source = self.hashes(self.job.source, cancel)
        destination = self.hashes(self.job.destination, cancel)
        if source is None or destination is None:
            return None
        return sums.pick_hash(source, destination)


def _is_local(path: str) -> bool:
    """A path rclone reads as local: absolute, relative to here, or naming no remote."""
    return path.startswith(("/", "./", "../")) or ":" not in path
