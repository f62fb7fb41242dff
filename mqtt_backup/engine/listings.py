"""The source as verify-then-delete reads it: listings (size, modtime) and hashes.

The first listing and, with ``verify: checksum``, the source's hashes are taken beside
the transfer (``EarlyReading``); the second listing after the comparison
(``list_source``). Every call here is sealed (engine/sealed.py). The rules these readings
serve are in docs/design.md, "Deletion safety".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

from mqtt_backup.engine import commands, process, sums
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.exit_codes import ExitKind, describe_exit
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.verify import Listing, parse_lsjson

logger = logging.getLogger(__name__)

T = TypeVar("T")


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""


def stopped(result: ProcessResult) -> bool:
    return result.cancelled or result.timed_out


def list_source(
    ctx: RunContext, label: str, also: str | None = None
) -> tuple[Listing | None, ProcessResult]:
    """A listing of the source's files, taken now; None with the result when it failed.

    ``also`` names a file to list whatever the job's filters say (a probe).
    """
    out = ctx.run_dir / f"listing-{label}.json"
    argv = commands.lsjson_command(ctx.rclone, ctx.job, ctx.conn, also=also)
    result = ctx.run(argv, f"list-{label}", stdout_path=out)
    if result.returncode != 0 or stopped(result):
        return None, result
    return parse_lsjson(read_text(out)), result


def list_failure(ctx: RunContext, result: ProcessResult) -> str:
    """Why a listing of the source failed, as the run's error."""
    if describe_exit(result.returncode, ctx.version).kind is ExitKind.DIRECTORY_NOT_FOUND:
        return "source directory not found"
    return "could not list the source: " + ctx.explain(ctx.last_error or "rclone failed")


class _Beside(Generic[T]):
    """One piece of work on a thread of its own, stopped with the run or by ``stop()``."""

    def __init__(self, ctx: RunContext, name: str, work: Callable[[threading.Event], T]) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._result: T | None = None
        self._work = work
        self.name = f"rclone-{ctx.job_id}-{name}"
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work(self._stop)
        except Exception:  # a failed reading is taken again, or compared otherwise
            logger.exception("job %s: %s failed", self._ctx.job_id, self.name)

    def wait(self) -> T | None:
        """The result once the work is done; None when it failed or the run was cancelled."""
        while self._thread.is_alive():
            if self._ctx.cancel.is_set():
                self._stop.set()
            self._thread.join(0.05)
        return self._result

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class EarlyReading:
    """The source read while the transfer runs: its first listing and its hashes.

    The transfer (always ``copy`` with verify_then_delete) only reads the source, so both
    can run beside it. ``started_at`` is taken before either starts: every listed size and
    modtime and every hash is of the source at that moment or later, and a file written
    after it is newer than the plan's cutoff (engine/verify.py). A listing that fails is
    taken again, in the open, after the transfer; the hashes are then not used.

    The hashes (``rclone hashsum``, ``--checkers`` files at a time) are taken only with
    ``verify: checksum`` and a hash type both sides have (``RunContext.sum_hash``).
    """

    def __init__(self, ctx: RunContext) -> None:
        self.started_at = datetime.now(UTC)
        self._ctx = ctx
        self._listing = _Beside(ctx, "early-list", self._list)
        self._sums: _Beside[tuple[str, dict[str, str]] | None] | None = None
        if ctx.job.deletion.verify == "checksum":
            self._sums = _Beside(ctx, "early-hash", self._hash)

    def _quiet(
        self, step: str, argv: list[str], out: Path, stop: threading.Event, *, watch: bool = False
    ) -> ProcessResult:
        ctx = self._ctx
        return process.run(
            argv,
            # Only logged: what failed here is read again, or compared otherwise, in the open.
            on_line=lambda line: logger.debug("rclone [%s %s]: %s", ctx.job_id, step, line),
            cancel=stop,
            deadline=ctx.deadline,
            stdout_path=out,
            name=f"rclone-{ctx.job_id}-{step}",
            env=ctx.env,
            watchdog=ctx.watchdog() if watch else None,
            on_start=ctx.process_started,
        )

    def _list(self, stop: threading.Event) -> Listing | None:
        ctx = self._ctx
        out = ctx.run_dir / "listing-early.json"
        argv = commands.lsjson_command(ctx.rclone, ctx.job, ctx.conn)
        result = self._quiet("early-list", argv, out, stop)
        if stopped(result) or result.returncode != 0:
            return None
        return parse_lsjson(read_text(out))

    def _hash(self, stop: threading.Event) -> tuple[str, dict[str, str]] | None:
        ctx = self._ctx
        hash_type = ctx.sum_hash(stop)
        if hash_type is None or stop.is_set():
            return None
        out = ctx.run_dir / "source-sums.txt"
        argv = commands.hashsum_command(ctx.rclone, ctx.job, ctx.conn, hash_type)
        # Watched: the verification waits for it. Stalled, it is not used, and every file
        # is compared by the check, which is watched too.
        if stopped(self._quiet("early-hash", argv, out, stop, watch=True)):
            return None
        # rclone prints a line only for a file it hashed, so even a hashsum that failed
        # part-way says true things: the files it did not hash are compared otherwise.
        return hash_type, sums.parse_hashsum(read_text(out), hash_type)

    def listing(self) -> Listing | None:
        """The first listing once taken; None when it failed or the run was cancelled."""
        return self._listing.wait()

    def hashes(self) -> tuple[str, dict[str, str]] | None:
        """The hash type and each hashed source file's hash, or None when none were taken."""
        return self._sums.wait() if self._sums is not None else None

    def stop(self) -> None:
        self._listing.stop()
        if self._sums is not None:
            self._sums.stop()
