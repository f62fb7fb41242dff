"""history_retention: old runs leave the history, the runs users and recovery rely on stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mqtt_backup.config.loader import parse_config
from mqtt_backup.config.models import AppConfig, HistoryRetention
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.errors import ConfigError
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History, HistoryPruner

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def add_run(
    history: History,
    job: str,
    number: int,
    status: str = "completed",
    *,
    at: datetime | None = None,
    dry_run: bool = False,
) -> str:
    """A run of ``job`` started ``number`` hours after T0 (or at ``at``) that ended ``status``."""
    run_id = f"{job}-{number}"
    started = at or T0 + number * HOUR
    running = st.started(st.initial(job, job, "none"), run_id, "schedule", started)
    history.start_run(running, dry_run=dry_run)
    if status != "running":
        outcome = RunOutcome(status, error=None if status == "completed" else "x")  # type: ignore[arg-type]
        history.finish_run(st.finished(running, outcome, started + timedelta(seconds=5)))
    return run_id


def run_ids(history: History, job: str) -> list[str]:
    return [r.run_id for r in history.runs(job, 10_000)]


def test_max_runs_keeps_each_jobs_newest_runs(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for n in range(10):
            add_run(history, "a", n, "failed")
            add_run(history, "b", n, "failed")
        removed = history.prune(max_age=None, max_runs=3, now=T0 + 20 * HOUR)
        assert removed == 14
        assert run_ids(history, "a") == ["a-9", "a-8", "a-7"]
        assert run_ids(history, "b") == ["b-9", "b-8", "b-7"]


def test_max_age_removes_older_runs(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for n in range(10):
            add_run(history, "a", n, "failed")
        now = T0 + 10 * HOUR
        assert history.prune(max_age=4 * HOUR, max_runs=None, now=now) == 6
        assert run_ids(history, "a") == ["a-9", "a-8", "a-7", "a-6"]


def test_either_bound_removes_a_run(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for n in range(10):
            add_run(history, "a", n, "failed")
        history.prune(max_age=8 * HOUR, max_runs=5, now=T0 + 10 * HOUR)
        assert run_ids(history, "a") == ["a-9", "a-8", "a-7", "a-6", "a-5"]
        history.prune(max_age=2 * HOUR, max_runs=5, now=T0 + 10 * HOUR)
        assert run_ids(history, "a") == ["a-9", "a-8"]


def test_the_newest_run_and_the_last_real_success_always_stay(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        add_run(history, "a", 0, "completed")
        add_run(history, "a", 1, "completed", dry_run=True)  # a dry run is no backup
        for n in range(2, 8):
            add_run(history, "a", n, "failed")
        history.prune(max_age=timedelta(minutes=1), max_runs=1, now=T0 + 100 * HOUR)
        assert run_ids(history, "a") == ["a-7", "a-0"]


def test_unfinished_runs_are_never_removed(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        add_run(history, "a", 0, "running")  # its process died; recovery still needs the row
        for n in range(1, 5):
            add_run(history, "a", n, "failed")
        history.prune(max_age=None, max_runs=1, now=T0 + 10 * HOUR)
        assert run_ids(history, "a") == ["a-4", "a-0"]
        assert [r.run_id for r in history.running_runs()] == ["a-0"]


def test_one_job_can_be_pruned_alone(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for n in range(5):
            add_run(history, "a", n, "failed")
            add_run(history, "b", n, "failed")
        history.prune(max_age=None, max_runs=2, now=T0 + 10 * HOUR, job_id="a")
        assert run_ids(history, "a") == ["a-4", "a-3"]
        assert len(run_ids(history, "b")) == 5


def test_no_bounds_keep_everything(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for n in range(5):
            add_run(history, "a", n, "failed")
        assert history.prune(max_age=None, max_runs=None, now=T0 + 1000 * HOUR) == 0
        assert len(run_ids(history, "a")) == 5


def test_the_file_stops_growing_once_the_bound_bites(tmp_path: Path) -> None:
    """Removed rows free pages that later runs reuse: the size is bounded, not only the rows."""
    retention = HistoryRetention(max_age=None, max_runs=20)
    sizes: list[int] = []
    with History(tmp_path) as history:
        pruner = HistoryPruner(history, lambda: retention)
        for n in range(1500):
            run_id = add_run(history, f"job{n % 5}", n, "failed")
            pruner.run_finished(history.last_states()[run_id.split("-")[0]])
            if n % 100 == 99:
                history._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
                sizes.append(history.path.stat().st_size)
        assert len(run_ids(history, "job0")) == 20
    assert max(sizes[3:]) == sizes[3], f"the history file kept growing: {sizes}"


def test_the_pruner_follows_the_current_retention(tmp_path: Path) -> None:
    retention = HistoryRetention(max_age=None, max_runs=4)
    with History(tmp_path) as history:
        pruner = HistoryPruner(history, lambda: retention)
        for n in range(6):
            add_run(history, "a", n, "failed")
            add_run(history, "b", n, "failed")
        pruner.run_finished(history.last_states()["a"])
        assert len(run_ids(history, "a")) == 4
        assert len(run_ids(history, "b")) == 6
        retention = HistoryRetention(max_age=None, max_runs=2)  # a reload
        assert pruner.prune_all() == 2 + 4
        assert len(run_ids(history, "a")) == len(run_ids(history, "b")) == 2


def config_of(retention: str) -> AppConfig:
    return parse_config(f"jobs: {{}}\n{retention}")


def test_retention_defaults_shorthand_and_switching_off() -> None:
    default = config_of("").history_retention
    assert (default.max_age, default.max_runs) == (timedelta(days=90), 1000)
    short = config_of("history_retention: 30d").history_retention
    assert (short.max_age, short.max_runs) == (timedelta(days=30), 1000)
    full = config_of("history_retention: {max_age: null, max_runs: 50}").history_retention
    assert (full.max_age, full.max_runs) == (None, 50)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("history_retention: {max_runs: 0}", "history_retention.max_runs"),
        ("history_retention: soon", "history_retention.max_age: 'soon' is not a duration"),
        ("history_retention: 500", "history_retention: write a duration like 90d"),
        ("history_retention: {max_rums: 5}", "history_retention.max_rums: unknown key"),
    ],
)
def test_bad_retention_is_a_config_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_of(text)
    assert any(expected in error for error in caught.value.errors), caught.value.errors
