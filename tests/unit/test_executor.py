"""The executor's own logic (locks, slots, retries, recovery) with a scripted engine.

End-to-end behaviour with real rclone is in tests/integration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.events import DeletionCounts, Event, PhaseStarted, Progress, RunOutcome
from mqtt_backup.errors import JobBusy, RcloneNotFound
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.locks import JobLock
from mqtt_backup.jobs.state import JobState


class Recorder:
    def __init__(self) -> None:
        self.states: list[JobState] = []
        self.finished: list[JobState] = []

    def state_changed(self, state: JobState) -> None:
        self.states.append(state)

    def run_finished(self, state: JobState) -> None:
        self.finished.append(state)


class ScriptedEngine:
    """Returns the given outcomes in turn, emitting a normal event sequence first."""

    def __init__(self, *outcomes: RunOutcome, gate: threading.Event | None = None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.gate = gate
        self.entered = threading.Event()

    def __call__(
        self,
        job_id: str,
        job: JobConfig,
        rclone: RcloneConfig,
        *,
        on_event: Callable[[Event], None],
        cancel: threading.Event,
        work_dir: Path,
        dry_run: bool = False,
    ) -> RunOutcome:
        self.calls += 1
        assert work_dir.is_dir()
        on_event(PhaseStarted("transferring"))
        on_event(Progress(bytes=5, total_bytes=10, files=1, total_files=2))
        self.entered.set()
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel.is_set():
                    return RunOutcome("cancelled", error="cancelled")
        on_event(PhaseStarted("verifying"))
        on_event(PhaseStarted("deleting"))
        on_event(DeletionCounts(2, 2, 10, 0))
        return self.outcomes.pop(0) if self.outcomes else RunOutcome("completed")


@pytest.fixture
def setup(make_config: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(engine: ScriptedEngine, **job: Any) -> tuple[JobExecutor, Recorder]:
        jobs = {
            name: {
                "source": str(tmp_path / "s"),
                "destination": str(tmp_path / "d"),
                "deletion": {"mode": "verify_then_delete"},
                "retry_delay": "0s",
                **job,
            }
            for name in ("a", "b")
        }
        config = make_config({"jobs": jobs, "max_concurrent_jobs": 1})
        history = History(config.state_dir).open()
        recorder = Recorder()
        return JobExecutor(config, history, engine=engine, sinks=[recorder]), recorder

    return build


def test_a_run_goes_through_every_phase_and_is_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    executor, rec = setup(ScriptedEngine())
    final = executor.run("a", "cli")
    assert final.status == "completed"
    assert executor.sinks.drain(5)
    # A sink may see progress coalesced, never out of order, and always the last state.
    phases = [s.phase for s in rec.states]
    assert phases == sorted(phases, key=["transferring", "verifying", "deleting", "done"].index)
    assert rec.states[-1] == final
    assert rec.finished == [final]
    (run,) = executor.history.runs("a")
    assert (run.status, run.files_deleted, run.trigger) == ("completed", 2, "cli")
    assert executor.history.last_states()["a"].to_json() == final.to_json()


def test_retryable_failures_are_retried_each_attempt_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(
        RunOutcome("failed", error="network", retryable=True), RunOutcome("completed")
    )
    executor, _ = setup(engine, retries=2)
    assert executor.run("a", "schedule").status == "completed"
    assert engine.calls == 2
    runs = executor.history.runs("a")
    assert [(r.attempt, r.status) for r in runs] == [(2, "completed"), (1, "failed")]


def test_permanent_failures_are_not_retried(setup) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(RunOutcome("failed", error="source directory not found"))
    executor, _ = setup(engine, retries=3)
    assert executor.run("a", "schedule").status == "failed"
    assert engine.calls == 1


def test_retries_stop_after_the_configured_number(setup) -> None:  # type: ignore[no-untyped-def]
    bad = RunOutcome("failed", error="network", retryable=True)
    engine = ScriptedEngine(bad, bad, bad, bad)
    executor, _ = setup(engine, retries=2)
    assert executor.run("a", "schedule").error == "network"
    assert engine.calls == 3


def test_engine_errors_still_reach_a_terminal_state(setup) -> None:  # type: ignore[no-untyped-def]
    def broken(*_: Any, **__: Any) -> RunOutcome:
        raise RcloneNotFound("rclone not found at /nope; install it or set rclone.binary")

    executor, rec = setup(ScriptedEngine())
    executor._engine = broken
    final = executor.run("a", "cli")
    assert final.status == "failed"
    assert final.error == "rclone not found at /nope; install it or set rclone.binary"
    assert executor.sinks.drain(5)
    assert rec.states[-1].status == "failed"


def test_unexpected_exceptions_become_failed_runs(setup) -> None:  # type: ignore[no-untyped-def]
    def crash(*_: Any, **__: Any) -> RunOutcome:
        raise RuntimeError("boom")

    executor, _ = setup(ScriptedEngine())
    executor._engine = crash
    assert executor.run("a", "cli").error == "internal error; see the log"


def test_busy_job_is_refused_and_other_processes_locks_count(setup) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    executor, _ = setup(engine)
    worker = threading.Thread(target=executor.run, args=("a", "cli"))
    worker.start()
    assert engine.entered.wait(5)
    with pytest.raises(JobBusy):
        executor.run("a", "command")
    gate.set()
    worker.join(5)
    with JobLock(executor.config.state_dir, "a"), pytest.raises(JobBusy):
        executor.run("a", "cli")


def test_second_job_waits_queued_for_a_slot_and_can_be_cancelled(setup) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    executor, rec = setup(engine)
    first = threading.Thread(target=executor.run, args=("a", "cli"))
    first.start()
    assert engine.entered.wait(5)
    results: list[JobState] = []
    second = threading.Thread(target=lambda: results.append(executor.run("b", "schedule")))
    second.start()
    for _ in range(200):
        if executor.state("b").status == "queued":
            break
        threading.Event().wait(0.01)
    assert executor.state("b").status == "queued"
    assert executor.cancel("b")
    second.join(5)
    assert results[0].status == "cancelled"
    assert results[0].error == "cancelled before it started"
    gate.set()
    first.join(5)
    assert executor.state("a").status == "completed"
    assert engine.calls == 1


def test_cancel_of_a_running_job(setup) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    executor, _ = setup(engine)
    results: list[JobState] = []
    worker = threading.Thread(target=lambda: results.append(executor.run("a", "cli")))
    worker.start()
    assert engine.entered.wait(5)
    assert executor.is_running("a")
    assert executor.cancel("a")
    worker.join(5)
    assert results[0].status == "cancelled"
    assert not executor.cancel("a")


def test_recover_marks_dead_runs_interrupted(setup) -> None:  # type: ignore[no-untyped-def]
    executor, rec = setup(ScriptedEngine())
    running = st.started(executor.state("a"), "dead1", "schedule", st.utcnow())
    executor.history.start_run(running)
    changed = executor.recover()
    assert [(s.job_id, s.status, s.run_id) for s in changed] == [("a", "interrupted", "dead1")]
    assert executor.history.runs("a")[0].status == "interrupted"
    assert executor.sinks.drain(5)
    assert rec.states[-1].status == "interrupted"


def test_recover_leaves_runs_of_live_processes_alone(setup) -> None:  # type: ignore[no-untyped-def]
    executor, _ = setup(ScriptedEngine())
    executor.history.start_run(st.started(executor.state("a"), "live1", "cli", st.utcnow()))
    with JobLock(executor.config.state_dir, "a"):
        assert executor.recover() == []
    assert executor.history.runs("a")[0].status == "running"


def test_reconfigure_keeps_history_and_drops_removed_jobs(setup, make_config) -> None:  # type: ignore[no-untyped-def]
    executor, _ = setup(ScriptedEngine())
    executor.run("a", "cli")
    new = make_config({"jobs": {"a": {"source": "/x", "destination": "/y", "name": "Renamed"}}})
    executor.reconfigure(new)
    assert set(executor.states()) == {"a"}
    assert executor.state("a").name == "Renamed"
    assert executor.state("a").last_result == "completed"
    assert executor.state("a").deletion.enabled is False


def test_a_failing_listener_does_not_stop_the_run(setup) -> None:  # type: ignore[no-untyped-def]
    class Broken:
        def state_changed(self, state: JobState) -> None:
            raise RuntimeError("listener down")

        def run_finished(self, state: JobState) -> None:
            raise RuntimeError("listener down")

    executor, _ = setup(ScriptedEngine())
    executor.add_sink(Broken())
    assert executor.run("a", "cli").status == "completed"


def test_retry_wait_is_cut_short_by_cancel(setup) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(RunOutcome("failed", error="net", retryable=True))
    executor, _ = setup(engine, retries=1, retry_delay="1h")
    timer = threading.Timer(0.3, executor.cancel, args=("a",))
    timer.start()
    final = executor.run("a", "cli")
    assert final.status == "failed"
    assert engine.calls == 1
