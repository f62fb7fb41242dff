"""Hooks: the user's programs run before and after a job's backup (docs/hooks.md).

``run_hooks`` starts them, one after another, through engine/process.py; everything else
here is pure: what a hook's ending means for the run, the environment a hook gets, and the
sentence that names a hook that failed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from mqtt_backup.config.durations import format_duration
from mqtt_backup.config.models import PASSWORD_ENV, HookConfig
from mqtt_backup.engine import process
from mqtt_backup.engine.events import HookKind, RunOutcome
from mqtt_backup.errors import ProgramNotStarted

logger = logging.getLogger(__name__)

# EX_TEMPFAIL in sysexits.h, "try again later": a before hook's way to say that there is
# nothing to do this time (the USB disk is not there). ``run-job`` exits with it too.
SKIP_EXIT = 75
# The end of a hook's output (standard output and error together) that is kept, in bytes.
OUTPUT_LIMIT = 16 * 1024
# The last line a sentence quotes from a hook's output, in characters.
_QUOTED_LINE = 200
# The lines of a before hook that ended the run that its state carries to the monitors.
LOG_TAIL = 20

HookEnding = Literal["ok", "skip", "failed", "timed_out", "cancelled", "not_started"]


def label(kind: HookKind) -> str:
    """``before hook``, ``on-failure hook``, ``after hook``."""
    return f"{kind.replace('_', '-')} hook"


@dataclass(frozen=True, slots=True)
class HookRun:
    """What a run tells each of its hooks, in ``MQTT_BACKUP_…`` environment variables."""

    job_id: str
    name: str
    run_id: str
    trigger: str
    attempt: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class HookResult:
    """How one hook ended. ``output`` is masked and holds the end of what it wrote."""

    kind: HookKind
    number: int
    program: str
    ending: HookEnding
    exit_code: int | None
    seconds: float
    timeout: float
    output: str = ""
    # Bytes of output cut from the front to keep within OUTPUT_LIMIT.
    dropped: int = 0
    # Why it did not start (masked), for ``not_started``.
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.ending == "ok"

    def sentence(self) -> str:
        """The hook's ending as one sentence: ``before hook 1 (mount-disk) exited 1: <line>``."""
        what = f"{label(self.kind)} {self.number} ({self.program})"
        line = last_line(self.output)
        said = f": {line}" if line else ""
        if self.ending == "ok":
            return f"{what} succeeded"
        if self.ending == "skip":
            return f"skipped by {what}{said}"
        if self.ending == "failed":
            return f"{what} exited {self.exit_code}{said}"
        if self.ending == "timed_out":
            limit = format_duration(timedelta(seconds=self.timeout))
            return f"{what} did not finish within {limit}; stopped{said}"
        if self.ending == "cancelled":
            return f"{what} was cancelled"
        return f"{what} could not start: {self.detail}"

    def record(self) -> dict[str, object]:
        """The hook as history keeps it (jobs/history.py, the runs' ``hooks`` column)."""
        return {
            "hook": self.kind,
            "number": self.number,
            "program": self.program,
            "ending": self.ending,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "output": self.output,
            "dropped": self.dropped,
            "sentence": self.sentence(),
        }


def last_line(output: str) -> str:
    """The last line with text in it, cut short: what a failing program says last is why."""
    for line in reversed(output.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= _QUOTED_LINE else line[: _QUOTED_LINE - 1] + "…"
    return ""


def ending(kind: HookKind, returncode: int, *, cancelled: bool, timed_out: bool) -> HookEnding:
    """What a hook's exit means; 75 skips the run only when a before hook says it."""
    if cancelled:
        return "cancelled"
    if timed_out:
        return "timed_out"
    if returncode == 0:
        return "ok"
    if returncode == SKIP_EXIT and kind == "before":
        return "skip"
    return "failed"


def environment(
    base: Mapping[str, str],
    run: HookRun,
    kind: HookKind,
    *,
    status: str,
    error: str | None = None,
    will_retry: bool = False,
) -> dict[str, str]:
    """The hook's environment: this process's, without the MQTT password, and the run's facts.

    ``error`` must already be masked. A hook needs no broker password, so the variable that
    may hold it is not handed on.
    """
    env = {name: value for name, value in base.items() if name != PASSWORD_ENV}
    facts = {
        "MQTT_BACKUP_HOOK": kind,
        "MQTT_BACKUP_JOB_ID": run.job_id,
        "MQTT_BACKUP_JOB_NAME": run.name,
        "MQTT_BACKUP_RUN_ID": run.run_id,
        "MQTT_BACKUP_TRIGGER": run.trigger,
        "MQTT_BACKUP_ATTEMPT": str(run.attempt),
        "MQTT_BACKUP_DRY_RUN": "1" if run.dry_run else "0",
        "MQTT_BACKUP_STATUS": status,
        "MQTT_BACKUP_ERROR": error or "",
        "MQTT_BACKUP_WILL_RETRY": "1" if will_retry else "0",
    }
    # An environment value cannot hold a NUL byte; a job name or an error might.
    return env | {name: value.replace("\0", "") for name, value in facts.items()}


def before_outcome(results: Sequence[HookResult]) -> RunOutcome | None:
    """How a run ends without its backup, or None when every before hook succeeded.

    A failed before hook is not retried: the program said no, and a retry after
    ``retry_delay`` would most likely hear the same.
    """
    if not results or results[-1].ok:
        return None
    last = results[-1]
    if last.ending == "cancelled":
        return RunOutcome("cancelled", error="cancelled")
    # What the hook said last goes where rclone's last lines go for a backup (monitors).
    said = tuple(line for line in last.output.splitlines() if line.strip())[-LOG_TAIL:]
    if last.ending == "skip":
        return RunOutcome("skipped", error=last.sentence(), log_tail=said)
    return RunOutcome("failed", error=last.sentence(), log_tail=said)


def after_outcome(outcome: RunOutcome, results: Sequence[HookResult]) -> RunOutcome:
    """A completed run whose after hook did not succeed ends with a warning (Problem on).

    It stays completed, and its backup still counts as the last success: the files are
    at the destination. A failed run keeps its own error.
    """
    failed = [result for result in results if not result.ok]
    if outcome.status != "completed" or not failed:
        return outcome
    warning = "; ".join(part for part in (outcome.warning, failed[0].sentence()) if part)
    return dataclasses.replace(outcome, warning=warning)


def run_hooks(
    hooks: Sequence[HookConfig],
    kind: HookKind,
    *,
    job_id: str,
    env: Mapping[str, str],
    cancel: threading.Event,
    mask: Callable[[str], str],
    on_start: Callable[[int, int], None] | None = None,
) -> list[HookResult]:
    """Run the hooks in order, stopping at the first that does not succeed (as ``set -e``).

    A cancelled run starts no hook, and a cancel stops the one that runs (SIGINT, SIGTERM,
    SIGKILL, as rclone). Output and sentences are masked with ``mask`` before anything
    keeps or logs them.
    """
    results: list[HookResult] = []
    for number, hook in enumerate(hooks, 1):
        result = _run_one(hook, kind, number, job_id, env, cancel, mask, on_start)
        results.append(result)
        if result.output:
            logger.debug("job %s: %s output:\n%s", job_id, _named(result), result.output)
        if result.ok:
            logger.info("job %s: %s in %.1fs", job_id, result.sentence(), result.seconds)
        elif result.ending == "skip":
            logger.info("job %s: %s", job_id, result.sentence())
        else:
            logger.warning("job %s: %s", job_id, result.sentence())
        if not result.ok:
            break
    return results


def _named(result: HookResult) -> str:
    return f"{label(result.kind)} {result.number} ({result.program})"


def _run_one(
    hook: HookConfig,
    kind: HookKind,
    number: int,
    job_id: str,
    env: Mapping[str, str],
    cancel: threading.Event,
    mask: Callable[[str], str],
    on_start: Callable[[int, int], None] | None,
) -> HookResult:
    timeout = hook.timeout.total_seconds()
    begun = time.monotonic()
    try:
        done = process.run_program(
            hook.run,
            cancel=cancel,
            deadline=begun + timeout,
            env=env,
            limit=OUTPUT_LIMIT,
            name=f"hook-{job_id}-{kind}-{number}",
            on_start=on_start,
        )
    except ProgramNotStarted as exc:
        return HookResult(
            kind,
            number,
            hook.program,
            "not_started",
            None,
            time.monotonic() - begun,
            timeout,
            detail=mask(str(exc)),
        )
    output, dropped = done.output, done.dropped
    if dropped:
        # The cut may fall inside a secret, whose rest would not be recognised: the partial
        # first line goes too.
        cut, _, output = output.partition("\n")
        dropped += len(cut.encode()) + 1
    return HookResult(
        kind,
        number,
        hook.program,
        ending(kind, done.returncode, cancelled=done.cancelled, timed_out=done.timed_out),
        None if done.cancelled or done.timed_out else done.returncode,
        time.monotonic() - begun,
        timeout,
        mask(output),
        dropped,
    )
