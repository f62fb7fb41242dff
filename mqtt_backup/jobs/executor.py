"""Runs jobs: the per-job lock, the concurrency limit, retries, history, and every state change."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mqtt_backup.config.models import AppConfig, HooksConfig, JobConfig
from mqtt_backup.engine import hooks as hk
from mqtt_backup.engine.events import Event, HookKind, ProcessStarted, Progress, RunOutcome
from mqtt_backup.engine.orphans import stop_leftover
from mqtt_backup.errors import JobBusy, MqttBackupError
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.locks import JobLock, is_locked
from mqtt_backup.jobs.state import JobState, Trigger
from mqtt_backup.redaction.secrets import Masker, Secrets, config_secrets
from mqtt_backup.sinks import Sink
from mqtt_backup.sinks.fanout import FanOut
from mqtt_backup.sinks.terminal import summary

logger = logging.getLogger(__name__)


# The signature of engine.runner.execute; tests put a scripted engine in its place.
Engine = Callable[..., RunOutcome]


def _default_engine() -> Engine:
    from mqtt_backup.engine.runner import execute

    return execute


class JobExecutor:
    """Owns each job's current state; the only writer of runs to history."""

    def __init__(
        self,
        config: AppConfig,
        history: History,
        *,
        engine: Engine | None = None,
        sinks: Iterable[Sink] = (),
    ) -> None:
        self.config = config
        self.history = history
        self._engine = engine or _default_engine()
        # Sinks run on threads of their own: a state change is called from rclone's output
        # reader, which must never wait (docs/architecture.md, "Threads").
        self.sinks = FanOut(list(sinks))
        self._lock = threading.RLock()
        self._slots = threading.BoundedSemaphore(config.max_concurrent_jobs)
        self._cancels: dict[str, threading.Event] = {}
        self._states: dict[str, JobState] = {}
        self._secrets = Secrets()
        self.reconfigure(config)

    # state

    def add_sink(self, sink: Sink) -> None:
        self.sinks.add(sink)

    def reconfigure(self, config: AppConfig) -> None:
        """Adopt a new config: states for new jobs, names and modes of changed ones."""
        saved = self.history.last_states()
        # Old secrets stay masked too: a run started before a reload may still report them.
        self._secrets |= config_secrets(config)
        self._masker = Masker(self._secrets)
        with self._lock:
            self.config = config
            for job_id, job in config.jobs.items():
                current = self._states.get(job_id) or saved.get(job_id)
                enabled = bool(self.history.setting(job_id, "enabled", job.enabled))
                name = job.name or job_id
                if current is None:
                    current = st.initial(job_id, name, job.deletion.mode, enabled)
                else:
                    current = st.configured(current, name, job.deletion.mode, enabled)
                self._states[job_id] = current
            for job_id in list(self._states):
                if job_id not in config.jobs and job_id not in self._cancels:
                    del self._states[job_id]

    def state(self, job_id: str) -> JobState:
        with self._lock:
            return self._states[job_id]

    def states(self) -> dict[str, JobState]:
        with self._lock:
            return dict(self._states)

    def update(self, job_id: str, change: Callable[[JobState], JobState]) -> JobState:
        """Apply a pure transition to a job's state, save it and tell the sinks."""
        with self._lock:
            new = change(self._states[job_id])
            self._states[job_id] = new
        self.history.save_state(new)
        self._notify(new)
        return new

    def _set(self, new: JobState) -> None:
        with self._lock:
            self._states[new.job_id] = new
        self._notify(new)

    def _notify(self, new: JobState) -> None:
        self.sinks.state_changed(new)

    # crash recovery (docs/design.md, guarantee 2: no stale running)

    def recover(self) -> list[JobState]:
        """Mark runs whose process is gone as interrupted; returns the states that changed.

        An rclone such a run left running is stopped first, so that nothing of the dead run
        goes on beside the job's next run.
        """
        now = st.utcnow()
        changed: list[JobState] = []
        for record in self.history.running_runs():
            if is_locked(self.config.state_dir, record.job_id):
                continue  # another process is running it right now
            self._stop_leftovers(record.job_id, record.run_id)
            with self._lock:
                current = self._states.get(record.job_id)
            if current is None or current.run_id != record.run_id:
                current = st.JobState(
                    job_id=record.job_id, name=record.job_id, status="running", run_id=record.run_id
                )
            new = st.interrupted(current, now, "the process running this job stopped unexpectedly")
            self.history.finish_run(new)
            if record.job_id in self.config.jobs:
                self._set(new)
                changed.append(new)
            logger.warning("job %s run %s was interrupted", record.job_id, record.run_id)
        return changed

    def _stop_leftovers(self, job_id: str, run_id: str) -> None:
        for pid, started in self.history.processes(run_id):
            # Only the very process the run started: same pid and same start time.
            if stop_leftover(pid, started):
                logger.warning(
                    "job %s run %s: stopped its rclone (process %d), still running after the "
                    "process that ran it stopped",
                    job_id,
                    run_id,
                    pid,
                )

    # runs

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancels

    def cancel(self, job_id: str) -> bool:
        """Ask the job's current run to stop; False when it is not running here."""
        with self._lock:
            event = self._cancels.get(job_id)
        if event is None:
            return False
        logger.info("job %s: cancel requested", job_id)
        event.set()
        return True

    def cancel_all(self) -> None:
        with self._lock:
            events = list(self._cancels.values())
        for event in events:
            event.set()

    def run(self, job_id: str, trigger: Trigger, *, dry_run: bool = False) -> JobState:
        """Run a job now, with its retries; returns the final state.

        Raises JobBusy when the job is already running here or in another process,
        and KeyError for an unknown job.
        """
        job = self.config.jobs[job_id]
        cancel = threading.Event()
        with self._lock:
            if job_id in self._cancels:
                raise JobBusy(f"job {job_id!r} is already running")
            self._cancels[job_id] = cancel
        try:
            with JobLock(self.config.state_dir, job_id):
                return self._attempts(job_id, job, trigger, cancel, dry_run)
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)

    def _attempts(
        self, job_id: str, job: JobConfig, trigger: Trigger, cancel: threading.Event, dry_run: bool
    ) -> JobState:
        attempt = 1
        while True:
            final, retryable = self._one_run(job_id, job, trigger, cancel, dry_run, attempt)
            if not _retries(final.status, retryable, attempt, job, cancel):
                return final
            delay = job.retry_delay.total_seconds()
            logger.info("job %s: attempt %d failed, retrying in %.0fs", job_id, attempt, delay)
            if cancel.wait(delay):
                return final
            attempt += 1

    def _one_run(
        self,
        job_id: str,
        job: JobConfig,
        trigger: Trigger,
        cancel: threading.Event,
        dry_run: bool,
        attempt: int,
    ) -> tuple[JobState, bool]:
        """One attempt: its final state and whether its failure may pass on a retry."""
        run_id = uuid.uuid4().hex[:12]
        if not self._slots.acquire(blocking=False):
            self._set(st.queued(self.state(job_id), run_id, trigger, st.utcnow()))
            # Check the cancel before each try too: a slot freed by a cancelled run (shutdown)
            # must not start a waiting run that was cancelled at the same moment.
            while cancel.is_set() or not self._slots.acquire(timeout=0.2):
                if cancel.is_set():
                    outcome = RunOutcome("cancelled", error="cancelled before it started")
                    return self._finish_unstarted(job_id, run_id, trigger, outcome, attempt), False
        try:
            return self._execute(job_id, job, run_id, trigger, cancel, dry_run, attempt)
        finally:
            self._slots.release()

    def _finish_unstarted(
        self, job_id: str, run_id: str, trigger: Trigger, outcome: RunOutcome, attempt: int
    ) -> JobState:
        now = st.utcnow()
        running = st.started(self.state(job_id), run_id, trigger, now)
        self.history.start_run(running, attempt)
        return self._finish(st.finished(running, outcome, now))

    def _execute(
        self,
        job_id: str,
        job: JobConfig,
        run_id: str,
        trigger: Trigger,
        cancel: threading.Event,
        dry_run: bool,
        attempt: int,
    ) -> tuple[JobState, bool]:
        """One run that got a slot, from its first state to its recorded end."""
        hooks = self.config.job_hooks(job_id)
        first: st.StatePhase = "before_hook" if hooks.before else "transferring"
        running = st.started(
            self.state(job_id), run_id, trigger, st.utcnow(), dry_run=dry_run, phase=first
        )
        self.history.start_run(running, attempt, dry_run)
        logger.info("job %s run %s started (%s, attempt %d)", job_id, run_id, trigger, attempt)
        self.sinks.run_started(running)
        self._set(running)
        run = _Run(
            job,
            hooks,
            hk.HookRun(job_id, running.name, run_id, trigger, attempt, dry_run),
            cancel,
        )
        try:
            outcome = self._stages(run)
        except Exception:  # the terminal state must be reached whatever happened
            logger.exception("job %s run %s: unexpected error", job_id, run_id)
            outcome = RunOutcome("failed", error="internal error; see the log")
        final = st.finished(self.state(job_id), outcome, st.utcnow())
        return self._finish(final, outcome.kept_files, run.results), outcome.retryable

    def _stages(self, run: _Run) -> RunOutcome:
        """Before hooks, the backup, then on-failure and after hooks (docs/hooks.md)."""
        facts = run.facts
        stopped = hk.before_outcome(self._hooks(run, "before", status="running"))
        if stopped is not None:
            # The backup never started. On-failure hooks still hear of a failure; after hooks
            # clean up after a backup, and there was none.
            if stopped.status == "failed":
                self._closing(run, "on_failure", stopped)
            return stopped
        outcome = self._backup(facts.job_id, run.job, facts.run_id, run.cancel, facts.dry_run)
        if outcome.status == "failed":
            self._closing(run, "on_failure", outcome)
        if outcome.status in ("completed", "failed"):
            outcome = hk.after_outcome(outcome, self._closing(run, "after", outcome))
        return outcome

    def _closing(self, run: _Run, kind: HookKind, outcome: RunOutcome) -> list[hk.HookResult]:
        """On-failure or after hooks, told how the run ended; none once the run was cancelled."""
        if run.cancel.is_set():
            return []
        return self._hooks(
            run,
            kind,
            status=outcome.status,
            error=outcome.error or outcome.warning,
            will_retry=_retries(
                outcome.status, outcome.retryable, run.facts.attempt, run.job, run.cancel
            ),
        )

    def _hooks(
        self,
        run: _Run,
        kind: HookKind,
        *,
        status: str,
        error: str | None = None,
        will_retry: bool = False,
    ) -> list[hk.HookResult]:
        hooks = getattr(run.hooks, kind)
        if not hooks:
            return []
        job_id, run_id = run.facts.job_id, run.facts.run_id
        if kind != "before":  # the run started in the before hooks' phase
            self.update(job_id, lambda current: st.hook_started(current, kind, st.utcnow()))
        masker = self._masker
        env = hk.environment(
            os.environ,
            run.facts,
            kind,
            status=status,
            error=masker.mask(error) if error else None,
            will_retry=will_retry,
        )

        def record(pid: int, started: int) -> None:
            # A hook left running by a crash is stopped at the next start, as rclone is.
            self.history.add_process(run_id, pid, started)

        ran = hk.run_hooks(
            hooks,
            kind,
            job_id=job_id,
            env=env,
            cancel=run.cancel,
            mask=masker.mask,
            on_start=record,
        )
        run.results += ran
        return ran

    def _backup(
        self, job_id: str, job: JobConfig, run_id: str, cancel: threading.Event, dry_run: bool
    ) -> RunOutcome:
        """The engine's run: transfer, and verify-then-delete when configured."""
        work_dir = Path(self.config.state_dir) / "work" / run_id
        work_dir.mkdir(parents=True, exist_ok=True)

        def on_event(event: Event) -> None:
            if isinstance(event, ProcessStarted):
                self.history.add_process(run_id, event.pid, event.started)
                return
            try:
                new = st.apply(self.state(job_id), event, st.utcnow())
            except ValueError:
                logger.exception("job %s: engine event out of order", job_id)
                return
            if isinstance(event, Progress):
                self._set(new)
            else:
                self.update(job_id, lambda _: new)

        try:
            return self._engine(
                job_id,
                job,
                self.config.rclone,
                on_event=on_event,
                cancel=cancel,
                work_dir=work_dir,
                dry_run=dry_run,
            )
        except MqttBackupError as exc:
            # A failure like any other: the on-failure and after hooks hear of it too.
            return RunOutcome("failed", error=str(exc))
        except Exception:  # the terminal state must be reached whatever happened
            logger.exception("job %s run %s: unexpected error", job_id, run_id)
            return RunOutcome("failed", error="internal error; see the log")
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _finish(
        self,
        final: JobState,
        kept_files: dict[str, list[str]] | None = None,
        hooks: list[hk.HookResult] | None = None,
    ) -> JobState:
        if final.error or final.log_tail:
            # The engine masks what it reports; this also covers the config's other secrets.
            final = final.model_copy(
                update={
                    "error": self._masker.mask(final.error) if final.error else None,
                    "log_tail": tuple(self._masker.mask(line) for line in final.log_tail),
                }
            )
        self.history.finish_run(final, kept_files, [result.record() for result in hooks or []])
        self._set(final)
        logger.info("run %s: %s", final.run_id, summary(final))
        for reason, names in sorted((kept_files or {}).items()):
            count = final.deletion.kept.get(reason, len(names))
            logger.info(
                "job %s: kept %d file(s), %s: %s%s",
                final.job_id,
                count,
                reason,
                ", ".join(names),
                ", …" if count > len(names) else "",
            )
        self.sinks.run_finished(final)
        return final


@dataclass(slots=True)
class _Run:
    """One attempt's hooks and what they are told; ``results`` grows as each hook ends."""

    job: JobConfig
    hooks: HooksConfig
    facts: hk.HookRun
    cancel: threading.Event
    results: list[hk.HookResult] = field(default_factory=list)


def _retries(
    status: str, retryable: bool, attempt: int, job: JobConfig, cancel: threading.Event
) -> bool:
    """Whether a run that ended so is followed by another attempt."""
    return status == "failed" and retryable and attempt <= job.retries and not cancel.is_set()
