"""A damaged history never stops a backup: the file is moved aside, a bad row is skipped."""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.errors import MqttBackupError
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def seed(state_dir: Path, runs: int = 300) -> None:
    """A history with enough runs to fill many pages, all completed."""
    with History(state_dir) as history:
        for number in range(runs):
            running = st.started(st.initial("a", "A", "none"), f"run-{number:04}", "cli", T0)
            history.start_run(running)
            history.finish_run(st.finished(running, RunOutcome("completed"), T0))


def damage_header(path: Path) -> None:
    path.write_bytes(b"this is not a database" + os.urandom(4000))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8192:20480] = os.urandom(20480 - 8192)
    path.write_bytes(bytes(data))


def checkpointed(state_dir: Path) -> Path:
    # Everything in the main file, so that damaging it damages the runs.
    path = state_dir / "history.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.mark.parametrize("damage", [damage_header, truncate, overwrite_middle])
def test_a_corrupt_history_is_moved_aside_and_a_fresh_one_works(
    damage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    seed(tmp_path)
    path = checkpointed(tmp_path)
    damage(path)
    damaged = path.read_bytes()
    quiet = caplog.at_level(logging.ERROR, logger="mqtt_backup.jobs.history")
    with quiet, History(tmp_path) as history:
        assert history.running_runs() == []
        running = st.started(st.initial("a", "A", "none"), "after", "cli", T0)
        history.start_run(running)
        history.finish_run(st.finished(running, RunOutcome("completed"), T0))
        assert [r.run_id for r in history.runs("a")] == ["after"]
    (aside,) = [p for p in tmp_path.glob("history.sqlite3.corrupt-*") if p.name.endswith("Z")]
    assert aside.read_bytes() == damaged
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "is corrupt" in record.getMessage()
    assert aside.name in record.getMessage()


def test_a_healthy_history_is_never_moved(tmp_path: Path) -> None:
    seed(tmp_path, runs=3)
    for _ in range(3):
        with History(tmp_path) as history:
            assert len(history.runs("a")) == 3
    assert list(tmp_path.glob("*corrupt*")) == []


def test_a_saved_state_that_no_longer_parses_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = st.initial("b", "B", "none")
    with History(tmp_path) as history:
        history.save_state(st.initial("a", "A", "none"))
        history.save_state(good)
        history.set_setting("a", "enabled", False)
        running = st.started(good, "r1", "cli", T0)
        history.start_run(running)
        history.finish_run(st.finished(running, RunOutcome("completed"), T0 + timedelta(seconds=1)))
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        db.execute("UPDATE job_states SET state='{\"job_id\": \"a\", \"st' WHERE job_id='a'")
        db.execute("UPDATE settings SET value='{nope' WHERE job_id='a'")
        db.execute("UPDATE runs SET started_at='yesterday'")
    warnings = caplog.at_level(logging.WARNING, logger="mqtt_backup.jobs.history")
    with warnings, History(tmp_path) as h:
        states = h.last_states()
        assert set(states) == {"b"}
        assert h.setting("a", "enabled", True) is True
        assert h.last_started("b") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "the history's saved state of job a cannot be read; it starts afresh",
        "the history's setting enabled of job a cannot be read; using True",
        "the history holds a run time of job b that is not a time",
    ]


def test_a_history_that_cannot_be_opened_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").mkdir()
    with pytest.raises(MqttBackupError, match=r"^cannot open the history .*history\.sqlite3: "):
        History(tmp_path).open()
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(MqttBackupError, match=f"^cannot create state_dir {plain}/state: "):
        History(plain / "state").open()
    assert list(tmp_path.glob("*corrupt*")) == []
