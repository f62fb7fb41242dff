"""Run-time proof that the destination is other storage than the source.

A path's spelling proves nothing: an alias remote, a union that includes the source, a
network server that serves the source's own folder, or a bind mount all make the
destination the source under another name. Then ``rclone check`` compares every file
with itself and "verifies" it. So before anything is deleted, two empty probe files with
names unique to the run are written, one to each side:

- the source's second listing (taken anyway, after the check) must not show the
  destination's probe at any depth: same folder, alias, or destination inside the source;
- the destination must not show the source's probe at its root: a union or alias that
  includes the source.

The probes are written and looked for on a thread of their own while the comparison
runs (it only reads), and removed while the delete runs, or at the end of the run,
whatever happened. See docs/design.md.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from mqtt_backup.engine import commands, process
from mqtt_backup.engine.context import RunContext
from mqtt_backup.engine.exit_codes import ExitKind, describe_exit
from mqtt_backup.engine.locations import describe
from mqtt_backup.engine.process import ProcessResult
from mqtt_backup.engine.verify import parse_lsjson

logger = logging.getLogger(__name__)

PREFIX = ".mqtt-backup-probe-"


def is_probe(path: str) -> bool:
    """Whether ``path`` names a probe file of any run (they are never planned or counted)."""
    return path.rpartition("/")[2].startswith(PREFIX)


class Probes:
    """The two probe files of one run: placed, looked for, removed."""

    def __init__(self, ctx: RunContext) -> None:
        token = uuid.uuid4().hex
        self.in_destination = f"{PREFIX}{token}-d"
        self.in_source = f"{PREFIX}{token}-s"
        # Its own last error: the probes' calls run beside the comparison's.
        self._ctx = ctx.beside()
        self._placed: list[str] = []
        self.proved_same = False
        self._placing: threading.Thread | None = None
        self._placement: str | ProcessResult | None = None
        self._removing: threading.Thread | None = None

    def start(self) -> None:
        """Start ``place()`` on a thread of its own; ``placed()`` waits for its answer."""

        def place() -> None:
            try:
                self._placement = self.place()
            except Exception:
                logger.exception("job %s: placing the probe files failed", self._ctx.job_id)
                self._placement = "could not write the probe files; nothing was deleted"

        name = f"rclone-{self._ctx.job_id}-probes"
        self._placing = threading.Thread(target=place, name=name, daemon=True)
        self._placing.start()

    def done(self) -> bool:
        """Whether the placement started by ``start()`` has its answer."""
        return self._placing is not None and not self._placing.is_alive()

    def placed(self) -> str | ProcessResult | None:
        """The answer of ``place()`` run by ``start()``, once it is there."""
        if self._placing is not None:
            self._placing.join()
        return self._placement

    def same_storage(self, how: str) -> str:
        """The sentence that refuses the run: which two locations are one, and how we know."""
        self.proved_same = True
        job = self._ctx.job
        return (
            f"the source {describe(job.source)} and the destination "
            f"{describe(job.destination)} are the same storage ({how}); nothing was deleted"
        )

    def place(self) -> str | ProcessResult | None:
        """Write both probes and look for the source's at the destination.

        Returns None when that proves nothing, an error sentence, or a stopped process.
        """
        ctx = self._ctx
        for side, remote, name in (
            ("destination", ctx.job.destination, self.in_destination),
            ("source", ctx.job.source, self.in_source),
        ):
            path = commands.child(remote, name)
            result = ctx.run(commands.touch_command(ctx.rclone, path, ctx.conn), f"probe-{side}")
            if result.cancelled or result.timed_out:
                return result
            if result.returncode != 0:
                why = ctx.explain(ctx.last_error or "rclone failed")
                return (
                    f"could not write a probe file to the {side}, which proves the two sides "
                    f"are separate storage ({why}); nothing was deleted"
                )
            self._placed.append(path)
        out = ctx.run_dir / "probe-look.json"
        look = commands.stat_command(
            ctx.rclone, commands.child(ctx.job.destination, self.in_source), ctx.conn
        )
        result = ctx.run(look, "probe-look", stdout_path=out)
        if result.cancelled or result.timed_out:
            return result
        kind = describe_exit(result.returncode, ctx.version).kind
        if kind is ExitKind.OK and parse_lsjson(_read(out)):
            return self.same_storage("the source's probe file appeared in the destination")
        # "Directory not found" is rclone's answer for a file that is not there: the hope.
        if kind not in (ExitKind.OK, ExitKind.DIRECTORY_NOT_FOUND):
            why = ctx.explain(ctx.last_error or "rclone failed")
            return f"could not look for the probe file at the destination ({why})"
        return None

    def seen_in(self, paths: Iterable[str]) -> bool:
        """Whether a listing of the source shows the destination's probe, at any depth."""
        return any(path.rpartition("/")[2] == self.in_destination for path in paths)

    def remove_soon(self) -> None:
        """Start removing the probes on a thread of their own: their work is done."""
        if self._placing is not None:
            self._placing.join()
        name = f"rclone-{self._ctx.job_id}-probe-remove"
        self._removing = threading.Thread(target=self._remove, name=name, daemon=True)
        self._removing.start()

    def remove(self) -> None:
        """Remove what was placed, once placed; not cancellable, since a cancelled run must
        clean up too."""
        if self._placing is not None:
            self._placing.join()
        if self._removing is not None:
            self._removing.join()
        self._remove()

    def _remove(self) -> None:
        ctx = self._ctx
        for path in self._placed:
            result = process.run(
                commands.deletefile_command(ctx.rclone, path, ctx.conn),
                on_line=ctx.log_line,
                cancel=threading.Event(),
                deadline=time.monotonic() + 60,
                name=f"rclone-{ctx.job_id}-probe-remove",
                env=ctx.env,
            )
            if result.returncode != 0:
                name = path.rpartition("/")[2].rpartition(":")[2]
                logger.warning("job %s: could not remove the probe file %s", ctx.job_id, name)
        self._placed.clear()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""
