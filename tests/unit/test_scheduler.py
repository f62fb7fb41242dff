"""Catch-up decisions (pure) and the APScheduler wrapper driven with a stand-in engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.models import AppConfig
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.scheduling.scheduler import JobScheduler, interval_start, missed_fire
from mqtt_backup.scheduling.triggers import parse_schedule

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
HOURLY = parse_schedule("every 1h")
NIGHTLY = parse_schedule("0 3 * * *")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# missed_fire


def test_interval_fire_passed_while_down_is_missed() -> None:
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=None, now=at(1.5)) == at(1)


def test_interval_fire_not_yet_due_is_not_missed() -> None:
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=None, now=at(0.5)) is None


def test_fire_skipped_while_the_service_was_up_is_not_missed() -> None:
    # The 11:00 fire fell while the service was alive (the job was still busy, say).
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=at(1.2), now=at(1.5)) is None


def test_first_fire_after_the_service_went_down_is_the_missed_one() -> None:
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=at(1.2), now=at(3.5)) == at(2)


def test_several_missed_fires_are_one_catch_up() -> None:
    # One answer, the first missed fire: the caller runs the job once.
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=None, now=at(30)) == at(1)


def test_cron_fire_passed_while_down_is_missed() -> None:
    yesterday = datetime(2026, 11, 28, 3, 0, 0, 4000, tzinfo=UTC)
    now = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    missed = missed_fire(NIGHTLY, UTC, reference=yesterday, last_alive=None, now=now)
    assert missed == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def test_cron_before_the_next_fire_is_not_missed() -> None:
    yesterday = datetime(2026, 11, 28, 3, 0, 0, 4000, tzinfo=UTC)
    now = datetime(2026, 11, 29, 2, 59, tzinfo=UTC)
    assert missed_fire(NIGHTLY, UTC, reference=yesterday, last_alive=None, now=now) is None


def test_a_run_that_started_exactly_on_its_fire_time_missed_nothing() -> None:
    exact = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert missed_fire(NIGHTLY, UTC, reference=exact, last_alive=None, now=now) is None


def test_cron_follows_the_configured_time_zone() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")  # 03:00 there is 02:00 UTC in November
    reference = datetime(2026, 11, 28, 2, 0, 0, 4000, tzinfo=UTC)
    now = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    missed = missed_fire(NIGHTLY, berlin, reference=reference, last_alive=None, now=now)
    assert missed == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def test_cron_catch_up_follows_the_either_day_rule() -> None:
    # "0 3 13 * 5": every Friday and every 13th. Tuesday 13 January 2026 was due.
    schedule = parse_schedule("0 3 13 * 5")
    monday = datetime(2026, 1, 12, 3, 0, 0, 4000, tzinfo=UTC)
    now = datetime(2026, 1, 13, 4, 0, tzinfo=UTC)
    missed = missed_fire(schedule, UTC, reference=monday, last_alive=None, now=now)
    assert missed == datetime(2026, 1, 13, 3, 0, tzinfo=UTC)


def test_a_last_sign_of_life_in_the_future_does_not_hide_a_missed_fire() -> None:
    # The previous service wrote its heartbeat under a clock three years ahead.
    ahead = at(3 * 365 * 24)
    assert missed_fire(HOURLY, UTC, reference=T0, last_alive=ahead, now=at(1.5)) == at(1)


def test_without_a_reference_nothing_is_missed() -> None:
    assert missed_fire(HOURLY, UTC, reference=None, last_alive=at(-100), now=at(100)) is None


def test_interval_start_keeps_the_cadence_of_the_last_run() -> None:
    assert interval_start(T0, timedelta(hours=6), at(1)) == at(6)
    assert interval_start(None, timedelta(hours=6), at(1)) == at(7)


# JobScheduler with a stand-in engine (real APScheduler, real time, short intervals)


class FakeEngine:
    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[str] = []
        self.ran = threading.Condition()

    def __call__(self, job_id: str, *_args: Any, cancel: threading.Event, **_kw: Any) -> RunOutcome:
        cancel.wait(self.seconds)
        with self.ran:
            self.calls.append(job_id)
            self.ran.notify_all()
        return RunOutcome("cancelled" if cancel.is_set() else "completed")

    def wait_calls(self, count: int, timeout: float = 10.0) -> None:
        with self.ran:
            assert self.ran.wait_for(lambda: len(self.calls) >= count, timeout), self.calls


@pytest.fixture
def parts(make_config: Any, tmp_path: Path) -> Any:
    made: list[tuple[JobScheduler, History]] = []

    def build(
        jobs: dict[str, Any], engine: FakeEngine, seed: Any = None, **options: Any
    ) -> tuple[JobScheduler, JobExecutor, History, AppConfig]:
        base = {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}
        config = make_config({"jobs": {job: base | extra for job, extra in jobs.items()}})
        history = History(config.state_dir).open()
        if seed is not None:
            seed(history)
        executor = JobExecutor(config, history, engine=engine)
        scheduler = JobScheduler(executor, history, **options)
        made.append((scheduler, history))
        return scheduler, executor, history, config

    yield build
    for scheduler, history in made:
        scheduler.stop()
        history.close()


def test_a_scheduled_job_fires_and_shows_its_next_run(parts: Any) -> None:
    engine = FakeEngine()
    scheduler, executor, history, config = parts({"a": {"schedule": "every 1s"}}, engine)
    assert scheduler.start(config) == []
    assert executor.state("a").next_run_at is not None
    engine.wait_calls(2)
    assert {r.trigger for r in history.runs("a")} == {"schedule"}


def test_a_paused_job_does_not_fire_and_has_no_next_run(parts: Any) -> None:
    engine = FakeEngine()
    scheduler, executor, history, config = parts({"a": {"schedule": "every 1s"}}, engine)
    scheduler.start(config)
    scheduler.set_enabled("a", False)
    state = executor.state("a")
    assert (state.enabled, state.next_run_at) == (False, None)
    assert history.setting("a", "enabled") is False
    count = len(engine.calls)
    time.sleep(2.2)  # nothing to wait on: the point is that nothing happens
    assert len(engine.calls) <= count + 1  # at most a fire that was already under way
    scheduler.set_enabled("a", True)
    assert executor.state("a").next_run_at is not None
    engine.wait_calls(count + 2)


def test_disabled_in_config_is_paused_from_the_start(parts: Any) -> None:
    engine = FakeEngine()
    scheduler, executor, _h, config = parts(
        {"a": {"schedule": "every 1s", "enabled": False}}, engine
    )
    scheduler.start(config)
    assert executor.state("a").next_run_at is None
    assert executor.state("a").enabled is False


def _record_run(history: History, job_id: str, started: datetime) -> None:
    running = st.started(st.initial(job_id, job_id), started.isoformat(), "schedule", started)
    history.start_run(running)
    history.finish_run(st.finished(running, RunOutcome("completed"), started))


def _old_run(job_id: str, *hours_ago: float) -> Any:
    """Seed runs started that many hours ago (negative: recorded under a clock that was ahead)."""

    def seed(history: History) -> None:
        for hours in hours_ago:
            _record_run(history, job_id, datetime.now(UTC) - timedelta(hours=hours))

    return seed


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_stopping_as_a_catch_up_fires_leaves_apschedulers_thread_without_an_error(
    parts: Any,
) -> None:
    # A catch-up is a one-off job that APScheduler drops right after firing it: stopped at
    # that moment, its thread once looked for the job in the wrong place and died with a
    # traceback in serve's log.
    for n in range(20):
        job = f"a{n}"  # its own job each time: a run of the last one is not missed
        scheduler, _e, _h, config = parts(
            {job: {"schedule": "every 1h"}}, FakeEngine(), seed=_old_run(job, 2)
        )
        assert scheduler.start(config) == [job]
        aps = scheduler._scheduler
        assert aps is not None and aps._thread is not None
        thread = aps._thread
        scheduler.stop()
        thread.join(5)


def test_catch_up_runs_once_for_a_missed_fire(parts: Any) -> None:
    engine = FakeEngine()
    scheduler, _e, history, config = parts(
        {"a": {"schedule": "every 1h"}}, engine, seed=_old_run("a", 5)
    )
    assert scheduler.start(config) == ["a"]
    engine.wait_calls(1)
    assert [r.trigger for r in history.runs("a")] == ["catch_up", "schedule"]


def test_no_catch_up_when_switched_off(parts: Any) -> None:
    engine = FakeEngine()
    scheduler, *_rest = parts(
        {"a": {"schedule": "every 1h", "catch_up": False}}, engine, seed=_old_run("a", 5)
    )
    assert scheduler.start(_rest[-1]) == []


def test_a_never_run_job_waits_for_its_first_fire(parts: Any) -> None:
    scheduler, _e, history, config = parts({"a": {"schedule": "every 1h"}}, FakeEngine())
    assert scheduler.start(config) == []
    assert history.setting("a", "first_scheduled") is not None


def test_reload_adds_changes_and_removes_schedules(parts: Any, make_config: Any) -> None:
    engine = FakeEngine()
    scheduler, executor, _h, config = parts({"a": {"schedule": "every 1h"}}, engine)
    scheduler.start(config)
    first = executor.state("a").next_run_at
    jobs = config.model_dump()["jobs"]
    jobs["a"]["schedule"] = "every 2h"
    jobs["b"] = dict(jobs["a"], schedule="every 1s")
    new = make_config({"jobs": jobs})
    executor.reconfigure(new)
    scheduler.apply(new)
    assert executor.state("a").next_run_at != first
    engine.wait_calls(1)
    assert engine.calls[0] == "b"
    jobs.pop("b")
    newer = make_config({"jobs": jobs})
    scheduler.apply(newer)
    count = len(engine.calls)
    time.sleep(1.5)  # nothing to wait on: b must not fire any more
    assert len(engine.calls) <= count + 1


# a clock that was wrong

THREE_YEARS = 3 * 365 * 24


def hours_until(moment: datetime | None) -> float:
    assert moment is not None
    return (moment - datetime.now(UTC)).total_seconds() / 3600


class NextRuns:
    """A state listener that lets a test wait for a job's next run to come within some hours."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.at: dict[str, datetime | None] = {}

    def state_changed(self, state: st.JobState) -> None:
        with self.changed:
            self.at[state.job_id] = state.next_run_at
            self.changed.notify_all()

    def run_finished(self, state: st.JobState) -> None:
        pass

    def wait_for(self, job_id: str, hours: Callable[[float], bool], timeout: float = 10.0) -> None:
        """Until the job's next run, in hours from now, as the sinks last heard it, passes."""

        def seen() -> bool:
            moment = self.at.get(job_id)
            return moment is not None and hours(hours_until(moment))

        with self.changed:
            assert self.changed.wait_for(seen, timeout), self.at


def test_a_start_recorded_in_the_future_does_not_hold_an_interval_job_back(
    parts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # One run while the clock was three years ahead; catch-up is off, so only the schedule
    # decides: from now, not from three years ahead.
    scheduler, executor, _h, config = parts(
        {"a": {"schedule": "every 6h", "catch_up": False}},
        FakeEngine(),
        seed=_old_run("a", -THREE_YEARS),
    )
    assert scheduler.start(config) == []
    assert 5.9 < hours_until(executor.state("a").next_run_at) <= 6
    future = st.iso(datetime.now(UTC) + timedelta(hours=THREE_YEARS))
    assert future is not None
    assert any(
        r.levelname == "WARNING" and future[:13] in r.getMessage() and "future" in r.getMessage()
        for r in caplog.records
    )


def test_an_earlier_start_that_can_be_trusted_keeps_the_cadence(parts: Any) -> None:
    scheduler, executor, _h, config = parts(
        {"a": {"schedule": "every 6h", "catch_up": False}},
        FakeEngine(),
        seed=_old_run("a", 2, -THREE_YEARS),
    )
    scheduler.start(config)
    assert 3.9 < hours_until(executor.state("a").next_run_at) <= 4


def test_a_job_that_ran_only_under_a_clock_ahead_catches_up(parts: Any) -> None:
    # When it really last ran is unknown; a run now gives it a start that can be trusted.
    engine = FakeEngine()
    scheduler, executor, history, config = parts(
        {"a": {"schedule": "every 6h"}}, engine, seed=_old_run("a", -THREE_YEARS)
    )
    assert scheduler.start(config) == ["a"]
    engine.wait_calls(1)
    # The next fire is set once the catch-up run has ended, a moment after the engine's call.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        moment = executor.state("a").next_run_at
        if moment is not None and 5.9 < hours_until(moment) <= 6:
            break
        time.sleep(0.02)
    assert 5.9 < hours_until(executor.state("a").next_run_at) <= 6
    assert history.runs("a")[1].trigger == "catch_up"  # [0] is the one recorded ahead


def test_a_cron_job_ignores_a_future_start_for_catch_up(parts: Any) -> None:
    # A run an hour ago and one recorded three years ahead: the fires since the first were
    # missed, and the one ahead must not hide them.
    scheduler, _e, _h, config = parts(
        {"a": {"schedule": "* * * * *"}}, FakeEngine(), seed=_old_run("a", 1, -THREE_YEARS)
    )
    assert scheduler.start(config) == ["a"]


def test_setting_the_clock_back_reschedules_from_the_new_time(parts: Any) -> None:
    offset = [0.0]
    scheduler, executor, history, config = parts(
        {"a": {"schedule": "every 6h"}, "b": {"schedule": "0 3 * * *"}},
        FakeEngine(),
        seed=_old_run("a", 1),
        clock_check_interval=0.05,
        clock_offset=lambda: offset[0],
    )
    next_runs = NextRuns()
    executor.add_sink(next_runs)
    scheduler.start(config)
    assert 4.9 < hours_until(executor.state("a").next_run_at) <= 5
    # What a run under a clock three years ahead leaves behind: its start in the history, and
    # fire times counted from it.
    ahead = datetime.now(UTC) + timedelta(hours=THREE_YEARS)
    _record_run(history, "a", ahead)
    aps = scheduler._scheduler
    assert aps is not None
    aps.modify_job("a", next_run_time=ahead + timedelta(hours=6))
    aps.modify_job("b", next_run_time=ahead + timedelta(hours=20))
    scheduler.refresh_all()
    assert hours_until(executor.state("b").next_run_at) > THREE_YEARS
    # The sinks hear of states on a thread of their own: the waits below must not pass on
    # the next runs they heard of before these.
    next_runs.wait_for("a", lambda hours: hours > THREE_YEARS)
    next_runs.wait_for("b", lambda hours: hours > THREE_YEARS)
    offset[0] -= THREE_YEARS * 3600  # NTP sets the clock back
    next_runs.wait_for("b", lambda hours: hours <= 24)
    next_runs.wait_for("a", lambda hours: hours <= 6)
    assert 4.9 < hours_until(executor.state("a").next_run_at) <= 5
