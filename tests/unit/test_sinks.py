"""The fan-out: a thread per sink, order kept per job, progress coalesced, failures contained."""

from __future__ import annotations

import threading
import time

from mqtt_backup.jobs import state as st
from mqtt_backup.sinks.fanout import FanOut


def states(job: str, count: int) -> list[st.JobState]:
    base = st.started(st.initial(job, job), "r1", "schedule", st.utcnow())
    return [base.model_copy(update={"percent": float(i)}) for i in range(count)]


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def _record(self, kind: str, state: st.JobState) -> None:
        self.gate.wait()
        time.sleep(self.delay)
        self.calls.append((kind, state.job_id, state.percent))

    def run_started(self, state: st.JobState) -> None:
        self._record("run_started", state)

    def state_changed(self, state: st.JobState) -> None:
        self._record("state_changed", state)

    def run_finished(self, state: st.JobState) -> None:
        self._record("run_finished", state)


class Raising:
    def state_changed(self, state: st.JobState) -> None:
        raise RuntimeError("boom")

    def run_finished(self, state: st.JobState) -> None:
        raise RuntimeError("boom")


def test_events_arrive_in_order_and_progress_is_coalesced() -> None:
    sink = Recorder()
    sink.gate.clear()  # a sink that is busy while 1,000 updates arrive
    fan = FanOut([sink])
    updates = states("a", 1000)
    fan.run_started(updates[0])
    for update in updates:
        fan.state_changed(update)
    fan.run_finished(updates[-1])
    sink.gate.set()
    assert fan.drain(5)
    kinds = [kind for kind, _, _ in sink.calls]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert len(sink.calls) <= 4  # not 1,002: only the latest waiting state is kept
    assert ("state_changed", "a", 999.0) in sink.calls
    fan.close()


def test_a_state_after_the_end_of_a_run_comes_after_it() -> None:
    sink = Recorder()
    sink.gate.clear()
    fan = FanOut([sink])
    first, second = states("a", 2)
    fan.state_changed(first)
    fan.run_finished(first)
    fan.state_changed(second)
    sink.gate.set()
    assert fan.drain(5)
    assert sink.calls == [
        ("state_changed", "a", 0.0),
        ("run_finished", "a", 0.0),
        ("state_changed", "a", 1.0),
    ]
    fan.close()


def test_jobs_are_coalesced_separately() -> None:
    sink = Recorder()
    sink.gate.clear()
    fan = FanOut([sink])
    for a, b in zip(states("a", 50), states("b", 50), strict=True):
        fan.state_changed(a)
        fan.state_changed(b)
    sink.gate.set()
    assert fan.drain(5)
    assert sink.calls == [("state_changed", "a", 49.0), ("state_changed", "b", 49.0)]
    fan.close()


def test_a_slow_or_failing_sink_delays_neither_the_caller_nor_the_others() -> None:
    slow, fast = Recorder(delay=5.0), Recorder()
    fan = FanOut([slow, Raising(), fast])
    started = time.monotonic()
    for update in states("a", 200):
        fan.state_changed(update)
    fan.run_finished(update)
    posting = time.monotonic() - started
    assert posting < 0.5
    deadline = time.monotonic() + 5
    while len(fast.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fast.calls[-1] == ("run_finished", "a", 199.0)
    assert not fan.drain(0.1)  # the slow one is still busy: said, not waited for
    fan.close(timeout=0.1)


def test_a_sink_without_every_method_is_fine() -> None:
    class OnlyFinished:
        def __init__(self) -> None:
            self.finished: list[str] = []

        def run_finished(self, state: st.JobState) -> None:
            self.finished.append(state.job_id)

    sink = OnlyFinished()
    fan = FanOut([sink])
    update = states("a", 1)[0]
    fan.run_started(update)
    fan.state_changed(update)
    fan.run_finished(update)
    assert fan.drain(5)
    assert sink.finished == ["a"]
    fan.close()
