"""The JobState payload and the pure transitions that turn engine events into new states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from mqtt_backup.engine.events import (
    DeletionCounts,
    Event,
    HookKind,
    Phase,
    PhaseStarted,
    Progress,
    RunOutcome,
)
from mqtt_backup.engine.events import Status as Ending

# The one vocabulary of statuses and phases (docs/design.md, "States and their order").
# Every other list of them is derived from these: Home Assistant's enum options and event
# types, the terminal's and the dashboard's labels, icons and colours. Each name is written
# once; the engine's own subsets (how a run ends, the engine's phases) are nested in.
ActiveStatus = Literal["queued", "running"]
FinalStatus = Literal[Ending, "interrupted"]
Status = Literal["idle", ActiveStatus, FinalStatus]
StatePhase = Literal["before_hook", Phase, "on_failure_hook", "after_hook", "done"]
Trigger = Literal["schedule", "command", "cli", "catch_up"]
DeletionMode = Literal["none", "verify_then_delete"]

STATUSES: tuple[Status, ...] = get_args(Status)
PHASES: tuple[StatePhase, ...] = get_args(StatePhase)
TERMINAL: frozenset[str] = frozenset(get_args(FinalStatus))
ACTIVE: frozenset[str] = frozenset(get_args(ActiveStatus))
# The endings that turn Home Assistant's Problem sensor on; a completed run does too when it
# carries a warning. ``skipped`` never does: Overdue catches a job that is skipped for good.
PROBLEMS: tuple[Status, ...] = ("failed", "interrupted")
HOOK_PHASES: dict[HookKind, StatePhase] = {
    "before": "before_hook",
    "on_failure": "on_failure_hook",
    "after": "after_hook",
}
# How people read each phase (the terminal, the dashboard); tests check every phase has one.
PHASE_LABELS: dict[StatePhase, str] = {
    "before_hook": "before hook",
    "transferring": "transferring",
    "verifying": "verifying",
    "deleting": "deleting",
    "on_failure_hook": "on-failure hook",
    "after_hook": "after hook",
    "done": "done",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None, timespec: str = "seconds") -> str | None:
    """UTC ISO-8601 with a ``Z``, as Home Assistant and the payload contract want it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DeletionState(_Frozen):
    enabled: bool = False
    mode: DeletionMode = "none"
    phase: StatePhase | None = None
    files_verified: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    files_kept: int = 0
    # Why files were kept, by reason (engine/verify.py names them): too_young, differs, …
    kept: dict[str, int] = {}


class JobState(_Frozen):
    """One job's state: the retained MQTT payload and the last-state row in history."""

    job_id: str
    name: str
    status: Status = "idle"
    phase: StatePhase | None = None
    percent: float = 0
    bytes_transferred: int = 0
    total_bytes: int = 0
    speed_bytes: float = 0
    eta_seconds: float | None = None
    files_transferred: int = 0
    total_files: int = 0
    errors: int = 0
    deletion: DeletionState = DeletionState()
    run_id: str | None = None
    trigger: Trigger | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    last_success_at: datetime | None = None
    last_result: Status | None = None
    next_run_at: datetime | None = None
    enabled: bool = True
    # A dry run transfers and deletes nothing, so it never counts as a success.
    dry_run: bool = False
    error: str | None = None
    updated_at: datetime | None = None
    # Told to the sinks at a run's end, never published or saved: rclone's exit status and
    # its last log lines, masked (a monitor's ping carries them).
    exit_code: Annotated[int | None, Field(exclude=True)] = None
    log_tail: Annotated[tuple[str, ...], Field(exclude=True)] = ()

    @field_serializer("started_at", "finished_at", "last_success_at", "next_run_at", "updated_at")
    def _times(self, value: datetime | None) -> str | None:
        return iso(value)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> JobState:
        return cls.model_validate_json(text)


def newer(first: JobState, second: JobState) -> JobState:
    """The state updated last; ``first`` on a tie or when either time is unknown."""
    if first.updated_at is None or second.updated_at is None:
        return first
    return second if second.updated_at > first.updated_at else first


def initial(
    job_id: str, name: str, deletion_mode: DeletionMode = "none", enabled: bool = True
) -> JobState:
    """A job that has never run."""
    return JobState(
        job_id=job_id,
        name=name,
        enabled=enabled,
        deletion=_deletion_config(deletion_mode),
        updated_at=utcnow(),
    )


def _deletion_config(mode: DeletionMode) -> DeletionState:
    return DeletionState(enabled=mode != "none", mode=mode)


def configured(state: JobState, name: str, deletion_mode: DeletionMode, enabled: bool) -> JobState:
    """The state after the job's settings changed (name, deletion mode, schedule switch)."""
    deletion = state.deletion
    if deletion.mode != deletion_mode:
        deletion = deletion.model_copy(
            update=_deletion_config(deletion_mode).model_dump(include={"enabled", "mode"})
        )
    return state.model_copy(update={"name": name, "deletion": deletion, "enabled": enabled})


def queued(state: JobState, run_id: str, trigger: Trigger, now: datetime) -> JobState:
    """A run is waiting for a free slot."""
    return _reset_run(state, run_id, trigger).model_copy(
        update={"status": "queued", "updated_at": now}
    )


def started(
    state: JobState,
    run_id: str,
    trigger: Trigger,
    now: datetime,
    *,
    dry_run: bool = False,
    phase: StatePhase = "transferring",
) -> JobState:
    """A run begins: with the transfer, or with its before hooks (``phase="before_hook"``)."""
    reset = _reset_run(state, run_id, trigger)
    deletion_phase = phase if state.deletion.enabled and phase == "transferring" else None
    return reset.model_copy(
        update={
            "dry_run": dry_run,
            "status": "running",
            "phase": phase,
            "started_at": now,
            "updated_at": now,
            "deletion": reset.deletion.model_copy(update={"phase": deletion_phase}),
        }
    )


def hook_started(state: JobState, kind: HookKind, now: datetime) -> JobState:
    """The run's ``kind`` hooks begin; the deletion's own phase stays where the engine left it."""
    if state.status != "running":
        raise ValueError(f"{kind} hooks for a job that is {state.status}")
    return state.model_copy(
        update={
            "phase": HOOK_PHASES[kind],
            "speed_bytes": 0,
            "eta_seconds": None,
            "updated_at": now,
        }
    )


def _reset_run(state: JobState, run_id: str, trigger: Trigger) -> JobState:
    return state.model_copy(
        update={
            "run_id": run_id,
            "trigger": trigger,
            "phase": None,
            "percent": 0,
            "bytes_transferred": 0,
            "total_bytes": 0,
            "speed_bytes": 0,
            "eta_seconds": None,
            "files_transferred": 0,
            "total_files": 0,
            "errors": 0,
            "started_at": None,
            "finished_at": None,
            "duration_seconds": None,
            "error": None,
            "dry_run": False,
            "exit_code": None,
            "log_tail": (),
            "deletion": _deletion_config(state.deletion.mode),
        }
    )


def apply(state: JobState, event: Event, now: datetime) -> JobState:
    """The state after one engine event. Raises ValueError on an impossible phase order."""
    if state.status != "running":
        raise ValueError(f"event {event!r} for a job that is {state.status}")
    update: dict[str, object] = {"updated_at": now}
    if isinstance(event, Progress):
        update |= {
            "percent": round(event.percent, 1),
            "bytes_transferred": event.bytes,
            "total_bytes": event.total_bytes,
            "speed_bytes": round(event.speed, 1),
            "eta_seconds": event.eta,
            "files_transferred": event.files,
            "total_files": event.total_files,
            "errors": event.errors,
        }
        if event.last_error:
            # Said while it runs, so a slow run shows why before it fails; the engine has
            # already reduced rclone's text to a sentence that is safe to publish.
            update["error"] = event.last_error
        if state.started_at is not None:
            update["duration_seconds"] = _seconds(state.started_at, now)
    elif isinstance(event, PhaseStarted):
        if event.phase == "deleting" and state.phase != "verifying":
            # Deletion is reachable only from a verified state (docs/design.md, guarantee 1).
            raise ValueError("deleting can only follow verifying")
        if event.phase == "verifying" and state.phase != "transferring":
            raise ValueError("verifying can only follow transferring")
        if event.phase == "transferring" and state.phase not in ("before_hook", "transferring"):
            raise ValueError("transferring can only follow the start or the before hooks")
        update["phase"] = event.phase
        if event.phase != "transferring":
            update |= {"speed_bytes": 0, "eta_seconds": None}
        if state.deletion.enabled:
            update["deletion"] = state.deletion.model_copy(update={"phase": event.phase})
    elif isinstance(event, DeletionCounts):
        update["deletion"] = _with_counts(state.deletion, event)
    return state.model_copy(update=update)


def _with_counts(
    deletion: DeletionState, counts: DeletionCounts, kept: dict[str, int] | None = None
) -> DeletionState:
    extra = {} if kept is None else {"kept": dict(kept)}
    return deletion.model_copy(
        update={
            "files_verified": counts.files_verified,
            "files_deleted": counts.files_deleted,
            "bytes_deleted": counts.bytes_deleted,
            "files_kept": counts.files_kept,
        }
        | extra
    )


def _final_counts(deletion: DeletionState, outcome: RunOutcome) -> DeletionState:
    # An outcome without counts (a run that stopped early) keeps what the events reported.
    if outcome.deletion == DeletionCounts():
        return deletion
    return _with_counts(deletion, outcome.deletion, outcome.kept_reasons)


def finished(state: JobState, outcome: RunOutcome, now: datetime) -> JobState:
    """The terminal state of a run.

    A completed run's warning takes the ``error`` field, so Home Assistant's Error sensor
    names it and its Problem sensor turns on; a dry run never moves ``last_success_at``, nor
    does a skipped run (its ``error`` says why it was skipped).
    """
    update: dict[str, object] = {
        "status": outcome.status,
        "phase": "done",
        "finished_at": now,
        "updated_at": now,
        "last_result": outcome.status,
        "error": outcome.error or outcome.warning,
        "exit_code": outcome.exit_code,
        "log_tail": tuple(outcome.log_tail),
        "speed_bytes": 0,
        "eta_seconds": None if outcome.status != "completed" else 0,
        "duration_seconds": _seconds(state.started_at, now) if state.started_at else 0.0,
        "deletion": _final_counts(state.deletion, outcome).model_copy(
            update={"phase": "done" if state.deletion.enabled else None}
        ),
    }
    if outcome.progress is not None:
        update |= {
            "bytes_transferred": outcome.progress.bytes,
            "total_bytes": outcome.progress.total_bytes,
            "files_transferred": outcome.progress.files,
            "total_files": outcome.progress.total_files,
            "errors": outcome.progress.errors,
        }
    if outcome.status == "completed":
        update["percent"] = 100
        if not state.dry_run:
            update["last_success_at"] = now
    elif outcome.progress is not None:
        update["percent"] = round(outcome.progress.percent, 1)
    return state.model_copy(update=update)


def interrupted(state: JobState, now: datetime, reason: str) -> JobState:
    """A run whose process went away without reporting how it ended."""
    return state.model_copy(
        update={
            "status": "interrupted",
            "phase": "done",
            "finished_at": now,
            "updated_at": now,
            "last_result": "interrupted",
            "error": reason,
            "speed_bytes": 0,
            "eta_seconds": None,
            "deletion": state.deletion.model_copy(
                update={"phase": "done" if state.deletion.enabled else None}
            ),
        }
    )


def scheduled(state: JobState, next_run_at: datetime | None, enabled: bool) -> JobState:
    """The state with its next fire time and schedule switch."""
    return state.model_copy(update={"next_run_at": next_run_at, "enabled": enabled})


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)
