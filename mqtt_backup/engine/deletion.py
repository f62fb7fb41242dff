"""Verify-then-delete: prove, list, check, repair, list again, delete only what the plan allows.

The steps and the rule each one keeps are in docs/design.md, "Deletion safety". In short:
nothing is deleted unless the two sides are proven to be separate storage (probes), the
check accounted for every listed file, and the plan (engine/verify.py) picked the file.
Every call here is sealed from the user's flags and environment (engine/sealed.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mqtt_backup.engine import commands, process
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.events import DeletionCounts, PhaseStarted, Progress
from mqtt_backup.engine.exit_codes import ExitKind, describe_exit
from mqtt_backup.engine.probes import Probes, is_probe
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.stats import LogLine, parse_line
from mqtt_backup.engine.verify import (
    DELETE_FAILED,
    DRY_RUN,
    SKIPPED_AT_DELETE,
    Listing,
    exact_path_rules,
    kept_warning,
    listable,
    parse_lsjson,
    parse_rclone_time,
    plan_deletion,
    read_report,
    unaccounted,
)

logger = logging.getLogger(__name__)

_UNCHECKED_HASHES = re.compile(r"^(\d+) hashes could not be checked")
_NO_COMMON_HASH = "No common hash found"
_USE_DOWNLOAD = "set deletion.verify to download (compares every byte) or size; nothing was deleted"
NO_COMMON_HASH = (
    "the source and the destination share no hash type, so verify: checksum cannot prove "
    f"any file; {_USE_DOWNLOAD}"
)
UNCHECKED_HASHES = (
    "the check could not compare some files by hash and rclone does not say which, so "
    f"verify: checksum proves none of them; {_USE_DOWNLOAD}"
)


@dataclass(slots=True)
class DeletionResult:
    """How verification and deletion ended.

    ``error`` fails the run; ``warning`` ends a completed run with a problem to look at.
    """

    counts: DeletionCounts = field(default_factory=DeletionCounts)
    kept: dict[str, int] = field(default_factory=dict)
    kept_files: dict[str, list[str]] = field(default_factory=dict)
    stopped: ProcessResult | None = None
    error: str | None = None
    warning: str | None = None
    # A refusal (same storage, no usable hash) fails again on every try.
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The check's verdicts, path sets read from its report files."""

    matched: set[str]
    differ: set[str]
    missing: set[str]
    errors: set[str]
    # rclone's last error during the check: the reason when it did not compare everything.
    last_error: str | None = None

    @classmethod
    def of(cls, sets: Iterable[set[str]], last_error: str | None = None) -> CheckResult:
        """The verdicts from four sets in the order of ``sets()``."""
        matched, differ, missing, errors = sets
        return cls(matched, differ, missing, errors, last_error)

    def sets(self) -> tuple[set[str], set[str], set[str], set[str]]:
        return self.matched, self.differ, self.missing, self.errors

    def without_probes(self) -> CheckResult:
        sets = ({p for p in s if not is_probe(p)} for s in self.sets())
        return CheckResult.of(sets, last_error=self.last_error)

    def replaced(self, paths: set[str], again: CheckResult) -> CheckResult:
        """These verdicts with those of ``paths`` taken from a second check.

        A path the second check did not report stays where it was: still differing.
        """
        reported = set().union(*again.sets()) & paths
        gone = paths & reported
        return CheckResult.of(
            (old - gone) | (new & gone) for old, new in zip(self.sets(), again.sets(), strict=True)
        )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""


def _stopped(result: ProcessResult) -> bool:
    return result.cancelled or result.timed_out


def _list_source(
    ctx: RunContext, label: str, also: str | None = None
) -> tuple[Listing | None, ProcessResult]:
    out = ctx.run_dir / f"listing-{label}.json"
    argv = commands.lsjson_command(ctx.rclone, ctx.job, ctx.conn, also=also)
    result = ctx.run(argv, f"list-{label}", stdout_path=out)
    if result.returncode != 0 or _stopped(result):
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
            commands.lsjson_command(ctx.rclone, ctx.job, ctx.conn),
            on_line=lambda _line: None,  # a failed listing is retried in the open, with its errors
            cancel=self._stop,
            deadline=ctx.deadline,
            stdout_path=out,
            name=self._name,
            env=ctx.env,
            on_start=ctx.process_started,
        )
        if result.returncode == 0 and not _stopped(result):
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
    if describe_exit(result.returncode, ctx.version).kind is ExitKind.DIRECTORY_NOT_FOUND:
        return "source directory not found"
    return "could not list the source: " + ctx.explain(ctx.last_error or "rclone failed")


def verify_and_delete(
    ctx: RunContext, *, dry_run: bool, early: EarlyListing | None = None
) -> DeletionResult:
    """Prove each source file is at the destination, then delete the proven ones in one call."""
    ctx.on_event(PhaseStarted("verifying"))
    if ctx.job.deletion.verify == "checksum" and ctx.no_common_hash():
        return DeletionResult(error=NO_COMMON_HASH, retryable=False)
    # A dry run writes nothing, probes included; it deletes nothing either.
    probes = None if dry_run else Probes(ctx)
    try:
        return _verify_and_delete(ctx, dry_run, early, probes)
    finally:
        if probes is not None:
            probes.remove()


def _verify_and_delete(
    ctx: RunContext, dry_run: bool, early: EarlyListing | None, probes: Probes | None
) -> DeletionResult:
    if probes is not None:
        placed = probes.place()
        if isinstance(placed, ProcessResult):
            return DeletionResult(stopped=placed)
        if placed is not None:
            return DeletionResult(error=placed, retryable=not probes.proved_same)

    if early is not None and (before := early.wait()) is not None:
        first_listed_at = early.started_at
    else:
        first_listed_at = datetime.now(UTC)
        before, result = _list_source(ctx, "before")
        if before is None:
            return _failed_listing(ctx, result)

    checked = _check(ctx, ctx.run_dir / "check")
    if isinstance(checked, ProcessResult):
        return DeletionResult(stopped=checked)
    if isinstance(checked, str):
        return DeletionResult(error=checked, retryable=checked is not UNCHECKED_HASHES)
    if checked.differ:
        checked = _repair(ctx, checked)
        if isinstance(checked, ProcessResult):
            return DeletionResult(stopped=checked)
        if isinstance(checked, str):
            return DeletionResult(error=checked, retryable=checked is not UNCHECKED_HASHES)

    after, result = _list_source(ctx, "after", also=probes.in_destination if probes else None)
    if after is None:
        return _failed_listing(ctx, result)
    if probes is not None and probes.seen_in(after):
        how = "the destination's probe file appeared in the source"
        return DeletionResult(error=probes.same_storage(how), retryable=False)

    before = {p: v for p, v in before.items() if not is_probe(p)}
    after = {p: v for p, v in after.items() if not is_probe(p)}
    checked = checked.without_probes()
    skipped = unaccounted(before, after, *checked.sets())
    if skipped:
        why = ctx.explain(checked.last_error or "rclone did not say why")
        return DeletionResult(
            error=f"the check did not compare {len(skipped)} of {len(after)} files "
            f"(first: {skipped[0]}; rclone: {why}); nothing was deleted"
        )

    cutoff = min(first_listed_at, datetime.now(UTC) - ctx.job.deletion.min_age)
    plan = plan_deletion(
        matched=checked.matched,
        before=before,
        after=after,
        not_modified_after=cutoff,
        differ=checked.differ,
        missing=checked.missing,
        errors=checked.errors,
    )
    kept, kept_files = dict(plan.kept), {k: list(v) for k, v in plan.kept_files.items()}
    if dry_run or not plan.delete:
        if plan.delete:
            kept[DRY_RUN] = len(plan.delete)
        counts = DeletionCounts(plan.verified, 0, 0, sum(kept.values()))
        ctx.on_event(counts)
        # A dry run transferred nothing, so what is missing at the destination says nothing.
        warning = None if dry_run else kept_warning(kept, kept_files)
        return DeletionResult(counts, kept, kept_files, warning=warning)

    ctx.on_event(PhaseStarted("deleting"))
    deleted, left, stopped, delete_error = _delete(ctx, plan.delete, cutoff)
    for why, paths in left.items():
        kept[why] = kept.get(why, 0) + len(paths)
        kept_files.setdefault(why, []).extend(paths[:5])
    if ctx.job.deletion.remove_empty_dirs and stopped is None:
        ctx.run(commands.rmdirs_command(ctx.rclone, ctx.job, ctx.conn), "rmdirs")
    counts = DeletionCounts(
        files_verified=plan.verified,
        files_deleted=len(deleted),
        bytes_deleted=sum(before[path][0] for path in deleted),
        files_kept=sum(kept.values()),
    )
    ctx.on_event(counts)
    return DeletionResult(
        counts,
        kept,
        kept_files,
        stopped=stopped,
        error=delete_error,
        warning=kept_warning(kept, kept_files),
    )


def _failed_listing(ctx: RunContext, result: ProcessResult) -> DeletionResult:
    if _stopped(result):
        return DeletionResult(stopped=result)
    return DeletionResult(error=_list_failure(ctx, result))


def _check(
    ctx: RunContext, folder: Path, files_from: Path | None = None
) -> CheckResult | ProcessResult | str:
    """Run ``rclone check``; its verdicts, the stopped process, or why it proves nothing."""
    folder.mkdir(exist_ok=True)
    names = ("match", "differ", "missing", "error")
    reports = commands.CheckReports(*(folder / f"{name}.txt" for name in names))
    verify = ctx.job.deletion.verify
    unverifiable = False

    def on_line(line: str) -> None:
        nonlocal unverifiable
        parsed = ctx.log_line(line)
        if not isinstance(parsed, LogLine) or verify != "checksum":
            return
        unchecked = _UNCHECKED_HASHES.match(parsed.message)
        if _NO_COMMON_HASH in parsed.message or (unchecked and int(unchecked.group(1)) > 0):
            # rclone does not say which objects lacked a hash: none of its matches count.
            unverifiable = True

    argv = commands.check_command(
        ctx.rclone, ctx.job, reports, ctx.conn, verify=verify, files_from=files_from
    )
    result = ctx.run(argv, "check", on_line=on_line, watch=True)
    if _stopped(result):
        return result
    if result.returncode not in (0, 1):  # 1: differences found (or nothing compared at all)
        return "verification failed: " + ctx.explain(ctx.last_error or "rclone check failed")
    if unverifiable:
        return UNCHECKED_HASHES
    files = (reports.match, reports.differ, reports.missing_on_dst, reports.error)
    return CheckResult.of((read_report(_read(path)) for path in files), last_error=ctx.last_error)


def _repair(ctx: RunContext, checked: CheckResult) -> CheckResult | ProcessResult | str:
    """Copy the differing files again with a copy that cannot skip them, then check them again.

    ``rclone copy`` skips a destination file with the source's size and modtime, whatever its
    bytes: such a damaged copy would be kept, and reported, on every run forever.
    """
    paths = sorted(p for p in checked.differ if listable(p))
    if not paths:
        return checked
    files = ctx.run_dir / "repair.txt"
    files.write_text("".join(p + "\n" for p in paths), encoding="utf-8", errors="surrogateescape")
    logger.info("job %s: copying %d differing file(s) again", ctx.job_id, len(paths))
    argv = commands.repair_command(ctx.rclone, ctx.job, files, ctx.conn)
    result = ctx.run(argv, "repair", watch=True)
    if _stopped(result):
        return result
    if result.returncode != 0:
        logger.warning(
            "job %s: copying differing files again failed: %s",
            ctx.job_id,
            ctx.explain(ctx.last_error or "rclone failed"),
        )
    again = _check(ctx, ctx.run_dir / "recheck", files_from=files)
    if not isinstance(again, CheckResult):
        return again
    return checked.replaced(set(paths), again)


def _delete(
    ctx: RunContext, paths: list[str], cutoff: datetime
) -> tuple[set[str], dict[str, list[str]], ProcessResult | None, str | None]:
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

    argv = commands.delete_command(
        ctx.rclone, ctx.job.source, rules, ctx.conn, not_modified_after=cutoff
    )
    result = ctx.run(argv, "delete", on_line=on_delete_line, watch=True)
    stopped = result if _stopped(result) else None
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
        return set(), {DELETE_FAILED: paths}, stopped, error
    left: dict[str, list[str]] = {}
    for path in paths:
        if path in remaining:
            modified = parse_rclone_time(remaining[path][1])
            why = SKIPPED_AT_DELETE if modified is None or modified > cutoff else DELETE_FAILED
            left.setdefault(why, []).append(path)
    return set(paths) - set(remaining), left, stopped, error


def _still_there(ctx: RunContext, rules: Path) -> Listing | None:
    out = ctx.run_dir / "listing-after-delete.json"
    argv = commands.planned_listing_command(ctx.rclone, ctx.job.source, rules, ctx.conn)
    # Not cancellable: after a cancel the counts of what was already deleted still matter.
    result = process.run(
        argv,
        on_line=ctx.log_line,
        cancel=threading.Event(),
        deadline=time.monotonic() + 300,
        stdout_path=out,
        name=f"rclone-{ctx.job_id}-recount",
        env=ctx.env,
        on_start=ctx.process_started,
    )
    if result.returncode != 0 or result.timed_out:
        return None
    return parse_lsjson(_read(out))
