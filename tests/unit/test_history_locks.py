from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.errors import JobBusy
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.locks import JobLock, is_locked

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def test_runs_and_last_states_survive_reopening(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        running = st.started(st.initial("a", "A", "verify_then_delete"), "r1", "cli", T0)
        history.start_run(running)
        assert [r.run_id for r in history.running_runs()] == ["r1"]
        final = st.finished(running, RunOutcome("completed"), T0 + timedelta(seconds=2))
        history.finish_run(final)
    with History(tmp_path) as history:
        (run,) = history.runs("a")
        assert (run.status, run.trigger, run.started_at) == (
            "completed",
            "cli",
            "2026-11-29T03:00:00.000Z",
        )
        assert history.running_runs() == []
        assert history.last_states()["a"] == final
        assert run.finished_at == "2026-11-29T03:00:02.000Z"


def test_rclone_processes_are_kept_while_their_run_goes_on(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        running = st.started(st.initial("a", "A"), "r1", "cli", T0)
        history.start_run(running)
        history.add_process("r1", 4321, 987654)
        history.add_process("r1", 4322, 987660)
        history.add_process("r1", 4321, 987654)  # told twice: kept once
    with History(tmp_path) as history:
        assert history.processes("r1") == [(4321, 987654), (4322, 987660)]
        history.finish_run(st.finished(running, RunOutcome("failed"), T0))
        assert history.processes("r1") == []


def test_published_topics_and_settings(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        history.record_published("a", {"t/1", "t/2"})
        history.record_published("a", ["t/2"])
        assert history.published_topics() == {"a": {"t/1", "t/2"}}
        history.forget_published("a")
        assert history.published_topics() == {}
        assert history.setting("a", "enabled", True) is True
        history.set_setting("a", "enabled", False)
        assert history.setting("a", "enabled", True) is False


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    with JobLock(tmp_path, "a"):
        assert is_locked(tmp_path, "a")
        with pytest.raises(JobBusy, match=f"already running \\(process {os.getpid()}\\)"):
            JobLock(tmp_path, "a").acquire()
    assert not is_locked(tmp_path, "a")


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from mqtt_backup.jobs.locks import JobLock
            JobLock({str(tmp_path)!r}, "a").acquire()
            print("held", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(tmp_path, "a")
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL leaves the lock file behind but never a held lock.
    assert (tmp_path / "locks" / "a.lock").exists()
    assert not is_locked(tmp_path, "a")
