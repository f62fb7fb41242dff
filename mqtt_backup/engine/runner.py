"""One run of one job: transfer, then (when configured) verify and delete.

``execute`` is safe to call from several threads at once for different jobs: all
state lives in a RunContext and a private work folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mqtt_backup.config.durations import format_duration
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine import commands
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.deletion import DeletionResult, verify_and_delete
from mqtt_backup.engine.events import Event, PhaseStarted, Progress, RunOutcome, Status
from mqtt_backup.engine.exit_codes import ExitKind, describe_exit
from mqtt_backup.engine.listings import EarlyReading
from mqtt_backup.engine.process import ProcessResult, rclone_version
from mqtt_backup.engine.sealed import seal
from mqtt_backup.engine.stats import parse_line
from mqtt_backup.errors import RcloneError

logger = logging.getLogger(__name__)


def execute(
    job_id: str,
    job: JobConfig,
    rclone: RcloneConfig,
    *,
    on_event: Callable[[Event], None],
    cancel: threading.Event,
    work_dir: Path,
    dry_run: bool = False,
) -> RunOutcome:
    """Run the job once and say how it ended; problems become a failed outcome, not exceptions."""
    deadline = time.monotonic() + job.timeout.total_seconds() if job.timeout else None
    try:
        # work_dir is private to this run; its parent outlives it and holds the version cache.
        version = rclone_version(rclone.binary, cache_dir=work_dir.parent)
    except RcloneError as exc:
        logger.info("job %s: %s", job_id, exc)
        return RunOutcome("failed", error=str(exc))
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=work_dir))
    ctx = RunContext(job_id, job, rclone, on_event, cancel, run_dir, version, deadline)
    _seal(ctx)
    try:
        outcome = _execute(ctx, dry_run)
    except RcloneError as exc:
        outcome = RunOutcome("failed", error=str(exc))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if ctx.log_tail:
        outcome = dataclasses.replace(outcome, log_tail=ctx.masked_tail())
    logger.debug(
        "job %s %s%s: %d files verified, %d deleted, %d kept",
        job_id,
        outcome.status,
        f" ({outcome.error})" if outcome.error else "",
        outcome.deletion.files_verified,
        outcome.deletion.files_deleted,
        outcome.deletion.files_kept,
    )
    return outcome


def _seal(ctx: RunContext) -> None:
    """Give the verification's calls only the flags and variables engine/sealed.py allows."""
    sealed = seal(ctx.rclone.extra_args, os.environ)
    ctx.conn = commands.config_flags(ctx.rclone) + sealed.flags
    ctx.env = sealed.env
    if sealed.dropped and ctx.job.deletion.mode == "verify_then_delete":
        logger.info(
            "job %s: the verification and the delete do not use %s (only connection settings "
            "reach them; filters belong in the job's filters)",
            ctx.job_id,
            ", ".join(sealed.dropped),
        )


def _timed_out(ctx: RunContext, result: ProcessResult, error: str | None = None) -> str:
    if result.stalled:
        return ctx.stalled(result, error)
    assert ctx.job.timeout is not None  # noqa: S101 - only a deadline can time out
    return f"timed out after {format_duration(ctx.job.timeout)}"


def _transfer(ctx: RunContext, dry_run: bool) -> tuple[ProcessResult, Progress | None, str | None]:
    last: Progress | None = None
    transfer_error: str | None = None

    def on_line(line: str) -> None:
        nonlocal last, transfer_error
        parsed = parse_line(line)
        if isinstance(parsed, Progress):
            last = parsed
            ctx.on_event(ctx.reported(parsed))
        else:
            ctx.log_line(line)
            if ctx.last_error:
                transfer_error = ctx.last_error

    ctx.on_event(PhaseStarted("transferring"))
    argv = commands.transfer_command(ctx.rclone, ctx.job, dry_run=dry_run)
    result = ctx.run(argv, "transfer", on_line=on_line, sealed=False, watch=True)
    if transfer_error is None and last is not None:
        transfer_error = last.last_error
    return result, last, transfer_error


def _execute(ctx: RunContext, dry_run: bool) -> RunOutcome:
    # The verification's first listing of the source, and its hashes, run beside the transfer.
    early = EarlyReading(ctx) if ctx.job.deletion.mode == "verify_then_delete" else None
    try:
        return _steps(ctx, dry_run, early)
    finally:
        if early is not None:
            early.stop()


def _steps(ctx: RunContext, dry_run: bool, early: EarlyReading | None) -> RunOutcome:
    result, progress, rclone_error = _transfer(ctx, dry_run)
    if result.cancelled:
        return RunOutcome("cancelled", error="cancelled", progress=progress)
    if result.timed_out:
        stop = _timed_out(ctx, result, rclone_error)
        return RunOutcome("failed", error=stop, retryable=True, progress=progress)

    error: str | None = None
    retryable = False
    code = result.returncode
    if code != 0:
        meaning = describe_exit(code, ctx.version)
        retryable = meaning.retryable
        missing = meaning.kind is ExitKind.DIRECTORY_NOT_FOUND
        if missing:
            error = "source directory not found"
        elif rclone_error:
            error = f"{meaning.sentence}: {ctx.explain(rclone_error)}"
        else:
            error = meaning.sentence
        # A missing source or a refused command line transferred nothing to verify.
        if (
            missing
            or meaning.kind is ExitKind.USAGE
            or ctx.job.deletion.mode != "verify_then_delete"
        ):
            return RunOutcome(
                "failed", error=error, exit_code=code, retryable=retryable, progress=progress
            )
    if ctx.job.deletion.mode != "verify_then_delete":
        return RunOutcome("completed", exit_code=0, progress=progress)

    # A partly failed transfer still verifies: the files that did arrive may go.
    deletion = verify_and_delete(ctx, dry_run=dry_run, early=early)
    return _combine(ctx, deletion, progress, error, code, retryable)


def _combine(
    ctx: RunContext,
    deletion: DeletionResult,
    progress: Progress | None,
    error: str | None,
    code: int,
    retryable: bool,
) -> RunOutcome:
    def ended(status: Status, **how: Any) -> RunOutcome:
        return RunOutcome(
            status,
            progress=progress,
            deletion=deletion.counts,
            kept_reasons=deletion.kept,
            kept_files=deletion.kept_files,
            **how,
        )

    stopped = deletion.stopped
    if stopped is not None and stopped.cancelled:
        return ended("cancelled", error="cancelled", exit_code=code or None)
    if stopped is not None and stopped.timed_out:
        return ended("failed", error=_timed_out(ctx, stopped, ctx.last_error), retryable=True)
    if error is not None:
        return ended("failed", error=error, exit_code=code, retryable=retryable)
    if deletion.error is not None:
        return ended("failed", error=deletion.error, retryable=deletion.retryable)
    return ended("completed", exit_code=0, warning=deletion.warning)
