"""What `run-job` shows while it works: a live bar in a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, TextIO

from mqtt_backup.jobs.state import HOOK_PHASES, PHASE_LABELS, JobState
from mqtt_backup.sinks import Sink

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

logger = logging.getLogger(__name__)

_WAITING = "waiting"
_HOOK_PHASES = frozenset(HOOK_PHASES.values())


class ProgressDisplay(Sink):
    """A sink drawing one job's progress; ``start()``/``stop()`` own the terminal."""

    name = "progress"

    def __init__(self, stream: TextIO, *, live: bool | None = None, plain_every: float = 10.0):
        self._stream = stream
        self._live = stream.isatty() if live is None else live
        self._plain_every = plain_every
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_phase: tuple[str, str | None] | None = None
        self._last_plain = 0.0

    def start(self) -> None:
        if self._live and self._bar is None:
            # rich only where a bar is drawn: cron runs skip its import time.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.fields[job]}[/] {task.fields[phase]:<12}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[files]}"),
                console=Console(file=self._stream),
                transient=False,
            )
            self._bar.start()

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def state_changed(self, state: JobState) -> None:
        if self._bar is not None:
            self._draw(self._bar, state)
            return
        phase = (state.status, state.phase)
        now = time.monotonic()
        if phase != self._last_phase:
            self._last_phase = phase
            self._last_plain = now
            logger.info("job %s: %s", state.job_id, _describe(state))
        elif state.status == "running" and now - self._last_plain >= self._plain_every:
            self._last_plain = now
            logger.info("job %s: %s", state.job_id, _describe(state))

    def run_finished(self, state: JobState) -> None:
        if self._bar is not None:
            self._draw(self._bar, state)

    def _draw(self, bar: Progress, state: JobState) -> None:
        files = f"{state.files_transferred}/{state.total_files} files"
        if state.deletion.enabled and state.phase in ("deleting", "done"):
            files += f", {state.deletion.files_deleted} deleted"
        job, phase = state.job_id, PHASE_LABELS[state.phase] if state.phase else _WAITING
        total = state.total_bytes or None
        if self._task is None:
            self._task = bar.add_task("", total=total, job=job, phase=phase, files=files)
        bar.update(
            self._task,
            completed=state.bytes_transferred,
            total=total,
            job=job,
            phase=phase,
            files=files,
        )


def _describe(state: JobState) -> str:
    if state.status != "running":
        return state.status
    if state.phase in _HOOK_PHASES:
        return f"running its {PHASE_LABELS[state.phase]}s"
    return (
        f"{state.phase or 'starting'} {state.percent:.0f}% "
        f"({_size(state.bytes_transferred)} of {_size(state.total_bytes)}, "
        f"{state.files_transferred}/{state.total_files} files, {_size(state.speed_bytes)}/s)"
    )


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def summary(state: JobState) -> str:
    """One line saying how a run ended; a dry run says what it would have done."""
    dry = state.dry_run
    parts = [f"{state.job_id}: {'dry run ' if dry else ''}{state.status}"]
    if state.duration_seconds is not None:
        parts.append(f"in {state.duration_seconds:.1f}s")
    if state.status == "skipped":
        # A before hook said there was nothing to do: nothing was transferred or verified.
        parts.append(f"— {state.error}" if state.error else "")
        return " ".join(part for part in parts if part)
    files = f"{state.files_transferred} files, {_size(state.bytes_transferred)}"
    parts.append(f"— would transfer {files}" if dry else f"— {files}")
    d = state.deletion
    if d.enabled and dry:
        parts.append(f"— verified {d.files_verified}, would delete {d.kept.get('dry_run', 0)}")
    elif d.enabled:
        reasons = ", ".join(f"{why} {n}" for why, n in sorted(d.kept.items()))
        parts.append(
            f"— verified {d.files_verified}, deleted {d.files_deleted} "
            f"({_size(d.bytes_deleted)}), kept {d.files_kept}"
            + (f" ({reasons})" if reasons else "")
        )
    if state.error:
        parts.append(f"— {state.error}")
    return " ".join(parts)
