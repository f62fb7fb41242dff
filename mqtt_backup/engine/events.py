"""Values the engine reports while a run goes on, and the outcome it returns at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The phases of the engine's own work; jobs/state.py places them among the run's phases.
Phase = Literal["transferring", "verifying", "deleting"]
# The user's programs around a run (engine/hooks.py), in the order they may run.
HookKind = Literal["before", "on_failure", "after"]


@dataclass(frozen=True, slots=True)
class Progress:
    """One rclone stats report of the transfer."""

    bytes: int = 0
    total_bytes: int = 0
    speed: float = 0.0
    eta: float | None = None
    files: int = 0
    total_files: int = 0
    errors: int = 0
    last_error: str | None = None
    deletes: int = 0

    @property
    def percent(self) -> float:
        """Share of bytes done, 0-100 (100 when there is nothing to transfer)."""
        if self.total_bytes <= 0:
            return 100.0 if self.total_files == self.files else 0.0
        return min(100.0, 100.0 * self.bytes / self.total_bytes)


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    phase: Phase


@dataclass(frozen=True, slots=True)
class DeletionCounts:
    """What verify-then-delete did: proven files, deleted files and bytes, files kept."""

    files_verified: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    files_kept: int = 0


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """An rclone process began; its pid and start time let a later start-up stop it.

    ``started`` is the kernel's start time of the process (clock ticks since boot): with the
    pid it names one process for good, where a pid alone may be reused.
    """

    pid: int
    started: int


Event = Progress | PhaseStarted | DeletionCounts | ProcessStarted

# How a run can end; jobs/state.py adds these to the statuses a job's state can hold.
# ``skipped``: a before hook said there was nothing to do this time (engine/hooks.py).
Status = Literal["completed", "failed", "cancelled", "skipped"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one engine run ended. ``error`` is a short sentence, never a command line.

    ``warning`` is a sentence for a completed run that left something to look at (source
    files kept for a reason a later run will not settle); ``kept_files`` names the first
    few files of each reason in ``kept_reasons``. ``log_tail`` holds rclone's last log
    lines (notices and errors), masked.
    """

    status: Status
    error: str | None = None
    # rclone's exit status when a call of it decided the outcome (monitors report it).
    exit_code: int | None = None
    retryable: bool = False
    progress: Progress | None = None
    deletion: DeletionCounts = field(default_factory=DeletionCounts)
    kept_reasons: dict[str, int] = field(default_factory=dict)
    kept_files: dict[str, list[str]] = field(default_factory=dict)
    warning: str | None = None
    log_tail: tuple[str, ...] = ()
