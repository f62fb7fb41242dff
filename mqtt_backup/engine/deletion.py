"""Verify-then-delete: prove, compare, repair, list again, delete only what the plan allows.

The steps and the rule each one keeps are in docs/design.md, "Deletion safety". In short:
nothing is deleted unless the two sides are proven to be separate storage (probes), the
comparison (engine/checks.py) accounted for every listed file, and the plan
(engine/verify.py) picked the file. With ``verify: checksum`` each side is hashed once:
the source beside the transfer (engine/listings.py), the destination after it.
Every call here is sealed from the user's flags and environment (engine/sealed.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mqtt_backup.engine import commands, process
from mqtt_backup.engine.checks import (
    NO_COMMON_HASH,
    UNCHECKED_HASHES,
    CheckResult,
    check,
    compare_by_sums,
    repair,
)
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.events import DeletionCounts, PhaseStarted, Progress
from mqtt_backup.engine.listings import (
    EarlyReading,
    list_failure,
    list_source,
    read_text,
    stopped,
)
from mqtt_backup.engine.probes import Probes, is_probe
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.stats import parse_line
from mqtt_backup.engine.verify import (
    DELETE_FAILED,
    DRY_RUN,
    SKIPPED_AT_DELETE,
    Listing,
    exact_path_rules,
    kept_warning,
    parse_lsjson,
    parse_rclone_time,
    plan_deletion,
    unaccounted,
)

logger = logging.getLogger(__name__)


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


def verify_and_delete(
    ctx: RunContext, *, dry_run: bool, early: EarlyReading | None = None
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


def _refused(found: CheckResult | ProcessResult | str) -> DeletionResult | None:
    """The run's end when a comparison was stopped or proves nothing; None when it may go on."""
    if isinstance(found, ProcessResult):
        return DeletionResult(stopped=found)
    if isinstance(found, str):
        return DeletionResult(error=found, retryable=found is not UNCHECKED_HASHES)
    return None


def _probed(probes: Probes | None) -> DeletionResult | None:
    """The run's end when the probes could not prove separate storage; None when they did."""
    if probes is None:
        return None
    placed = probes.placed()
    if isinstance(placed, ProcessResult):
        return DeletionResult(stopped=placed)
    if placed is not None:
        return DeletionResult(error=placed, retryable=not probes.proved_same)
    return None


FirstListing = tuple[Listing, datetime, tuple[str, dict[str, str]] | None]


def _first_listing(ctx: RunContext, early: EarlyReading | None) -> FirstListing | DeletionResult:
    """The first listing, when it started, and the source's hashes if they may be used."""
    if early is not None and (before := early.listing()) is not None:
        return before, early.started_at, early.hashes()
    # Taken again in the open: the early hashes are older than this listing's start, so
    # they prove nothing about it, and every file is compared by the check.
    first_listed_at = datetime.now(UTC)
    before, result = list_source(ctx, "before")
    if before is None:
        return _failed_listing(ctx, result)
    return before, first_listed_at, None


def _verify_and_delete(
    ctx: RunContext, dry_run: bool, early: EarlyReading | None, probes: Probes | None
) -> DeletionResult:
    # The probes are written and looked for while the source is listed and compared:
    # those only read. Nothing is repaired or deleted before they proved their part.
    if probes is not None:
        probes.start()
    first = _first_listing(ctx, early)
    if isinstance(first, DeletionResult):
        return _probed(probes) or first
    before, first_listed_at, hashed = first
    if probes is not None and probes.done() and (refusal := _probed(probes)) is not None:
        return refusal  # no need to compare first

    if hashed is not None:
        found = compare_by_sums(ctx, before, *hashed)
    else:
        found = check(ctx, ctx.run_dir / "check")
    if (refusal := _probed(probes) or _refused(found)) is not None:
        return refusal
    assert isinstance(found, CheckResult)  # noqa: S101 - _refused took the other kinds
    checked = found
    if checked.differ:
        found = repair(ctx, checked)
        if (refusal := _refused(found)) is not None:
            return refusal
        assert isinstance(found, CheckResult)  # noqa: S101 - as above
        checked = found

    after, result = list_source(ctx, "after", also=probes.in_destination if probes else None)
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
    # The probes did their part: they are removed while the delete runs.
    started = probes.remove_soon if probes is not None else None
    deleted, left, halted, delete_error = _delete(ctx, plan.delete, cutoff, started)
    for why, paths in left.items():
        kept[why] = kept.get(why, 0) + len(paths)
        kept_files.setdefault(why, []).extend(paths[:5])
    if ctx.job.deletion.remove_empty_dirs and halted is None:
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
        stopped=halted,
        error=delete_error,
        warning=kept_warning(kept, kept_files),
    )


def _failed_listing(ctx: RunContext, result: ProcessResult) -> DeletionResult:
    if stopped(result):
        return DeletionResult(stopped=result)
    return DeletionResult(error=list_failure(ctx, result))


def _delete(
    ctx: RunContext,
    paths: list[str],
    cutoff: datetime,
    started: Callable[[], None] | None = None,
) -> tuple[set[str], dict[str, list[str]], ProcessResult | None, str | None]:
    """One ``rclone delete`` for every planned path; ``started`` is called once it runs.

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
    result = ctx.run(argv, "delete", on_line=on_delete_line, watch=True, started=started)
    halted = result if stopped(result) else None
    error = None
    if halted is None and result.returncode != 0:
        error = "deleting failed: " + ctx.explain(ctx.last_error or "rclone failed")
    if halted is None and error is None and deletes == len(paths):
        return set(paths), {}, None, None
    # Some planned files are still there (skipped by the age guard, or not deletable), or
    # the run was stopped: ask the source which ones, so the counts are exact.
    remaining = _still_there(ctx, rules)
    if remaining is None:
        error = error or "could not tell which files were deleted"
        return set(), {DELETE_FAILED: paths}, halted, error
    left: dict[str, list[str]] = {}
    for path in paths:
        if path in remaining:
            modified = parse_rclone_time(remaining[path][1])
            why = SKIPPED_AT_DELETE if modified is None or modified > cutoff else DELETE_FAILED
            left.setdefault(why, []).append(path)
    return set(paths) - set(remaining), left, halted, error


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
    return parse_lsjson(read_text(out))
