"""The comparisons of verify-then-delete: which source files the destination holds.

- ``compare_by_sums`` (``verify: checksum`` with the source hashed beside the transfer):
  ``rclone checksum`` hashes each destination file once against the source's sums;
  files the sum list cannot carry (engine/sums.py) go to ``rclone check``.
- ``check``: ``rclone check`` hashes, sizes or reads both sides (every other case).
- ``repair``: a differing file is copied again and checked again, both sides.

Each returns the verdicts as path sets read from rclone's report files, the stopped
process, or a sentence saying why nothing is proven. Every call is sealed
(engine/sealed.py). See docs/design.md, "Deletion safety".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mqtt_backup.engine import commands, sums
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.listings import read_text, stopped
from mqtt_backup.engine.probes import is_probe
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.stats import LogLine
from mqtt_backup.engine.verify import Listing, listable, read_report

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

@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdicts, path sets read from rclone's report files."""

    matched: set[str]
    differ: set[str]
    missing: set[str]
    errors: set[str]
    # rclone's last error during the comparison: the reason when it did not compare everything.
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
        return CheckResult.of(sets, self.last_error)

    def about(self, paths: Iterable[str]) -> CheckResult:
        """Only the verdicts on ``paths``: a call is proof only for the files it was asked about."""
        wanted = set(paths)
        return CheckResult.of((s & wanted for s in self.sets()), self.last_error)

    def joined(self, other: CheckResult) -> CheckResult:
        """The verdicts of two calls about different files, together."""
        sets = (a | b for a, b in zip(self.sets(), other.sets(), strict=True))
        return CheckResult.of(sets, self.last_error or other.last_error)

    def replaced(self, paths: set[str], again: CheckResult) -> CheckResult:
        """These verdicts with those of ``paths`` taken from a second check.

        A path the second check did not report stays where it was: still differing.
        """
        reported = set().union(*again.sets()) & paths
        gone = paths & reported
        return CheckResult.of(
            (old - gone) | (new & gone) for old, new in zip(self.sets(), again.sets(), strict=True)
        )


def _reports(folder: Path) -> commands.CheckReports:
    folder.mkdir(exist_ok=True)
    names = ("match", "differ", "missing", "error")
    return commands.CheckReports(*(folder / f"{name}.txt" for name in names))


def _hash_watch(ctx: RunContext) -> tuple[Callable[[str], None], Callable[[], bool]]:
    """A line handler that notices rclone counting a file as matching without a hash."""
    unverifiable = False
    by_hash = ctx.job.deletion.verify == "checksum"

    def on_line(line: str) -> None:
        nonlocal unverifiable
        parsed = ctx.log_line(line)
        if not isinstance(parsed, LogLine) or not by_hash:
            return
        unchecked = _UNCHECKED_HASHES.match(parsed.message)
        if _NO_COMMON_HASH in parsed.message or (unchecked and int(unchecked.group(1)) > 0):
            # rclone does not say which objects lacked a hash: none of its matches count.
            unverifiable = True

    return on_line, lambda: unverifiable


def _verdicts(
    ctx: RunContext, step: str, argv: list[str], reports: commands.CheckReports, codes: set[int]
) -> CheckResult | ProcessResult | str:
    on_line, unverifiable = _hash_watch(ctx)
    result = ctx.run(argv, step, on_line=on_line, watch=True)
    if stopped(result):
        return result
    if result.returncode not in codes:
        return "verification failed: " + ctx.explain(ctx.last_error or f"rclone {step} failed")
    if unverifiable():
        return UNCHECKED_HASHES
    files = (reports.match, reports.differ, reports.missing_on_dst, reports.error)
    return CheckResult.of((read_report(read_text(path)) for path in files), ctx.last_error)


def check(
    ctx: RunContext, folder: Path, files_from: Path | None = None
) -> CheckResult | ProcessResult | str:
    """Run ``rclone check``; its verdicts, the stopped process, or why it proves nothing.

    With ``files_from`` only the files it names (one exact path per line) are checked.
    """
    reports = _reports(folder)
    verify = ctx.job.deletion.verify
    argv = commands.check_command(
        ctx.rclone, ctx.job, reports, ctx.conn, verify=verify, files_from=files_from
    )
    # 1: differences found (or nothing compared at all).
    return _verdicts(ctx, "check", argv, reports, {0, 1})


def checksum(
    ctx: RunContext, folder: Path, hash_type: str, listed: sums.SumList
) -> CheckResult | ProcessResult | str:
    """Hash the destination's copies of the listed files once and compare with their sums."""
    reports = _reports(folder)
    path = (folder / "source.sums").resolve()
    path.write_text(listed.text, encoding="utf-8", errors="surrogateescape")
    argv = commands.checksum_command(
        ctx.rclone, ctx.job, reports, ctx.conn, hash_type=hash_type, sums=path
    )
    # 1: differences found; 3: the destination folder is not there, and rclone reported
    # every listed file missing before it said so.
    found = _verdicts(ctx, "checksum", argv, reports, {0, 1, 3})
    return found.about(listed.names) if isinstance(found, CheckResult) else found


def compare_by_sums(
    ctx: RunContext, before: Listing, hash_type: str, hashes: dict[str, str]
) -> CheckResult | ProcessResult | str:
    """Verdicts on every listed file: by its sum where the list carries it, else by check.

    A verdict counts only for a file the call was asked about: ``rclone checksum``
    reports a destination file under its own name, which may be a name the list did not
    carry (one that differs only in Unicode form).
    """
    listed = sums.sum_list((p for p in before if not is_probe(p)), hashes)
    found = CheckResult(set(), set(), set(), set())
    if listed.names:
        by_sum = checksum(ctx, ctx.run_dir / "checksum", hash_type, listed)
        if not isinstance(by_sum, CheckResult):
            return by_sum
        found = found.joined(by_sum)
    if listed.others:
        logger.debug("job %s: %d file(s) compared by check", ctx.job_id, len(listed.others))
        files = ctx.run_dir / "check-others.txt"
        write_names(files, listed.others)
        by_check = check(ctx, ctx.run_dir / "check", files_from=files)
        if not isinstance(by_check, CheckResult):
            return by_check
        found = found.joined(by_check.about(listed.others))
    return found


def write_names(path: Path, names: Iterable[str]) -> None:
    """One exact name per line, for ``--files-from-raw``."""
    path.write_text(
        "".join(name + "\n" for name in names), encoding="utf-8", errors="surrogateescape"
    )


def repair(ctx: RunContext, checked: CheckResult) -> CheckResult | ProcessResult | str:
    """Copy the differing files again with a copy that cannot skip them, then check them again.

    ``rclone copy`` skips a destination file with the source's size and modtime, whatever its
    bytes: such a damaged copy would be kept, and reported, on every run forever. The second
    look is ``rclone check`` of both sides: a source file changed since its hash was taken
    then matches its new copy, and the second listing keeps it as changed.
    """
    paths = sorted(p for p in checked.differ if listable(p))
    if not paths:
        return checked
    files = ctx.run_dir / "repair.txt"
    write_names(files, paths)
    logger.info("job %s: copying %d differing file(s) again", ctx.job_id, len(paths))
    argv = commands.repair_command(ctx.rclone, ctx.job, files, ctx.conn)
    result = ctx.run(argv, "repair", watch=True)
    if stopped(result):
        return result
    if result.returncode != 0:
        logger.warning(
            "job %s: copying differing files again failed: %s",
            ctx.job_id,
            ctx.explain(ctx.last_error or "rclone failed"),
        )
    again = check(ctx, ctx.run_dir / "recheck", files_from=files)
    if not isinstance(again, CheckResult):
        return again
    return checked.replaced(set(paths), again)
