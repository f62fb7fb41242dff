"""Verify-then-delete: list, check, list again, delete only what the plan allows."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mqtt_backup.engine import commands, process
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.events import DeletionCounts, PhaseStarted, Progress
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.stats import LogLine, parse_line
from mqtt_backup.engine.verify import (
    DELETE_FAILED,
    SKIPPED_AT_DELETE,
    Listing,
    exact_path_rules,
    parse_lsjson,
    parse_rclone_time,
    plan_deletion,
    read_report,
)

logger = logging.getLogger(__name__)

_UNCHECKED_HASHES = re.compile(r"^(\d+) hashes could not be checked")
_NO_COMMON_HASH = "No common hash found"


@dataclass(slots=True)
class DeletionResult:
    counts: DeletionCounts = field(default_factory=DeletionCounts)
    kept: dict[str, int] = field(default_factory=dict)
    stopped: ProcessResult | None = None
    error: str | None = None


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""


def _list_source(ctx: RunContext, label: str) -> tuple[Listing | None, ProcessResult]:
    out = ctx.run_dir / f"listing-{label}.json"
    result = ctx.run(commands.lsjson_command(ctx.rclone, ctx.job), f"list-{label}", stdout_path=out)
    if result.returncode != 0 or result.cancelled or result.timed_out:
        return None, result
    return parse_lsjson(_read(out)), result


class EarlyListing:
    """The source's first listing, taken in the background while the transfer runs.

    All the plan asks of the first listing is that it ends before the check starts. The
    transfer (always ``copy`` with verify_then_delete) only reads the source, so the
    listing can run beside it and the verification starts with the check. A file that
    changes after the listing started is newer than the cutoff and kept. A listing that
    fails is taken again, in the open, after the transfer.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.started_at = datetime.now(UTC)
        self._ctx = ctx
        self._stop = threading.Event()
        self._listing: Listing | None = None
        self._name = f"rclone-{ctx.job_id}-early-list"
        self._thread = threading.Thread(target=self._list, name=self._name, daemon=True)
        self._thread.start()

    def _list(self) -> None:
        ctx = self._ctx
        out = ctx.run_dir / "listing-early.json"
        result = process.run(
            commands.lsjson_command(ctx.rclone, ctx.job),
            on_line=lambda _line: None,  # a failed listing is retried in the open, with its errors
            cancel=self._stop,
            deadline=ctx.deadline,
            stdout_path=out,
            name=self._name,
        )
        if result.returncode == 0 and not (result.cancelled or result.timed_out):
            self._listing = parse_lsjson(_read(out))

    def wait(self) -> Listing | None:
        """The listing once it is done; None when it failed or the run was cancelled."""
        while self._thread.is_alive():
            if self._ctx.cancel.is_set():
                self._stop.set()
            self._thread.join(0.05)
        return self._listing

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _list_failure(ctx: RunContext, result: ProcessResult) -> str:
    if result.returncode == 3:
        return "source directory not found"
    return "could not list the source: " + ctx.explain(ctx.last_error or "rclone failed")


def verify_and_delete(
    ctx: RunContext, *, dry_run: bool, early: EarlyListing | None = None
) -> DeletionResult:
    """Prove each source file is at the destination, then delete the proven ones in one call."""
    ctx.on_event(PhaseStarted("verifying"))
    verify = ctx.job.deletion.verify
    unverifiable = verify == "checksum" and ctx.no_common_hash()
    if early is not None and (before := early.wait()) is not None:
        first_listed_at = early.started_at
    else:
        first_listed_at = datetime.now(UTC)
        before, result = _list_source(ctx, "before")
        if before is None:
            if result.cancelled or result.timed_out:
                return DeletionResult(stopped=result)
            return DeletionResult(error=_list_failure(ctx, result))

    reports = commands.CheckReports(
        *(ctx.run_dir / f"{n}.txt" for n in ("match", "differ", "mod", "err"))
    )

    def on_check_line(line: str) -> None:
        nonlocal unverifiable
        parsed = ctx.log_line(line)
        if not isinstance(parsed, LogLine) or verify != "checksum":
            return
        unchecked = _UNCHECKED_HASHES.match(parsed.message)
        if _NO_COMMON_HASH in parsed.message or (unchecked and int(unchecked.group(1)) > 0):
            # rclone does not say which objects lacked a hash: none of its matches count.
            unverifiable = True

    argv = commands.check_command(ctx.rclone, ctx.job, reports, verify=verify)
    checked = ctx.run(argv, "check", on_line=on_check_line)
    if checked.cancelled or checked.timed_out:
        return DeletionResult(stopped=checked)
    error = None
    matched: set[str] = set()
    if checked.returncode in (0, 1):  # 1: differences found, on both sides of 1.69
        matched = read_report(_read(reports.match))
    else:
        error = "verification failed: " + ctx.explain(ctx.last_error or "rclone check failed")

    after, result = _list_source(ctx, "after")
    if after is None:
        if result.cancelled or result.timed_out:
            return DeletionResult(stopped=result)
        return DeletionResult(error=_list_failure(ctx, result))

    min_age = ctx.job.deletion.min_age
    cutoff = min(first_listed_at, datetime.now(UTC) - min_age)
    plan = plan_deletion(
        matched=matched,
        before=before,
        after=after,
        not_modified_after=cutoff,
        differ=read_report(_read(reports.differ)),
        missing=read_report(_read(reports.missing_on_dst)),
        errors=read_report(_read(reports.error)),
        hashes_unverifiable=unverifiable,
    )
    kept = dict(plan.kept)
    if dry_run or not plan.delete:
        if plan.delete:
            kept["dry_run"] = len(plan.delete)
        counts = DeletionCounts(plan.verified, 0, 0, sum(kept.values()))
        ctx.on_event(counts)
        return DeletionResult(counts, kept, error=error)

    ctx.on_event(PhaseStarted("deleting"))
    deleted, left, stopped, delete_error = _delete(ctx, plan.delete, cutoff)
    for why, count in left.items():
        kept[why] = kept.get(why, 0) + count
    if ctx.job.deletion.remove_empty_dirs and stopped is None:
        ctx.run(commands.rmdirs_command(ctx.rclone, ctx.job), "rmdirs")
    counts = DeletionCounts(
        files_verified=plan.verified,
        files_deleted=len(deleted),
        bytes_deleted=sum(before[path][0] for path in deleted),
        files_kept=sum(kept.values()),
    )
    ctx.on_event(counts)
    return DeletionResult(counts, kept, stopped=stopped, error=error or delete_error)


def _delete(
    ctx: RunContext, paths: list[str], cutoff: datetime
) -> tuple[set[str], dict[str, int], ProcessResult | None, str | None]:
    """One ``rclone delete`` for every planned path.

    Returns the deleted paths, the planned ones left in place by reason, the stopped
    process when cancelled or timed out, and an error sentence.
    """
    rules = ctx.run_dir / "delete-rules.txt"
    rules.write_text(exact_path_rules(paths), encoding="utf-8", errors="surrogateescape")
    deletes = 0

    def on_delete_line(line: str) -> None:
        nonlocal deletes
        parsed = parse_line(line)
        if isinstance(parsed, Progress):
            deletes = parsed.deletes
        else:
            ctx.log_line(line)

    argv = commands.delete_command(ctx.rclone, ctx.job.source, rules, not_modified_after=cutoff)
    result = ctx.run(argv, "delete", on_line=on_delete_line)
    stopped = result if result.cancelled or result.timed_out else None
    error = None
    if stopped is None and result.returncode != 0:
        error = "deleting failed: " + ctx.explain(ctx.last_error or "rclone failed")
    if stopped is None and error is None and deletes == len(paths):
        return set(paths), {}, None, None
    # Some planned files are still there (skipped by the age guard, or not deletable), or
    # the run was stopped: ask the source which ones, so the counts are exact.
    remaining = _still_there(ctx, rules)
    if remaining is None:
        error = error or "could not tell which files were deleted"
        return set(), {DELETE_FAILED: len(paths)}, stopped, error
    left: dict[str, int] = {}
    for path in paths:
        if path in remaining:
            modified = parse_rclone_time(remaining[path][1])
            why = SKIPPED_AT_DELETE if modified is None or modified > cutoff else DELETE_FAILED
            left[why] = left.get(why, 0) + 1
    return set(paths) - set(remaining), left, stopped, error


def _still_there(ctx: RunContext, rules: Path) -> Listing | None:
    out = ctx.run_dir / "listing-after-delete.json"
    argv = commands.planned_listing_command(ctx.rclone, ctx.job.source, rules)
    # Not cancellable: after a cancel the counts of what was already deleted still matter.
    result = process.run(
        argv,
        on_line=ctx.log_line,
        cancel=threading.Event(),
        deadline=time.monotonic() + 300,
        stdout_path=out,
        name=f"rclone-{ctx.job_id}-recount",
    )
    if result.returncode != 0 or result.timed_out:
        return None
    return parse_lsjson(_read(out))
