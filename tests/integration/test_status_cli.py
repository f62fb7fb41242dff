"""``mqtt-backup status`` as a user reads it: every job, dead runs named, whole lines in a pipe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.jobs.history import History
from tests.integration.cli_helpers import make_tree, run_cli, start_cli, wait_for, write_config
from tests.integration.serve_helpers import child_pids

pytestmark = pytest.mark.timeout(90)


def config_file(tmp_path: Path, rclone: str, jobs: dict[str, Any]) -> Path:
    settings = {
        "instance": "lab",
        "state_dir": str(tmp_path / "state"),
        "rclone": {"binary": rclone},
        "jobs": jobs,
    }
    return write_config(tmp_path / "c.yaml", settings)


def status_json(config: Path) -> dict[str, Any]:
    result = run_cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_run_whose_process_died_shows_interrupted_and_history_is_left_alone(
    tmp_path: Path, rclone_binary: str
) -> None:
    make_tree(tmp_path / "src", {"big.bin": os.urandom(2_000_000)})
    config = config_file(tmp_path, rclone_binary, {"slow": {
        "source": str(tmp_path / "src"), "destination": str(tmp_path / "dst"),
        "extra_args": ["--bwlimit", "100k"]}})  # fmt: skip
    process = start_cli(config, "run-job", "slow")
    try:
        wait_for(lambda: child_pids(process.pid), 20, "rclone to start")
        assert status_json(config)["slow"]["status"] == "running"  # its process holds the lock

        children = child_pids(process.pid)
        process.kill()  # like a power cut: nothing gets to record how the run ended
        process.wait(10)
    finally:
        for pid in child_pids(process.pid) if process.poll() is None else children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
    shown = status_json(config)["slow"]
    assert shown["status"] == "interrupted"
    assert shown["error"] == "the process running this job stopped unexpectedly"
    table = run_cli(config, "status").stdout
    row = next(line for line in table.splitlines() if "slow" in line)
    assert "│ interrupted │" in row and "│ running" not in row
    with History(tmp_path / "state") as history:  # status only reads
        assert [r.status for r in history.running_runs()] == ["running"]
        assert history.last_states()["slow"].status == "running"
    # The lock file still names the dead run: looking at a lock does not take it.
    assert (tmp_path / "state" / "locks" / "slow.lock").read_text() == str(process.pid)


def test_every_configured_job_is_listed_and_a_pipe_gets_whole_timestamps(
    tmp_path: Path, rclone_binary: str
) -> None:
    make_tree(tmp_path / "src", {"a": b"1"})
    jobs = {
        "done": {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")},
        "broken-with-a-long-name": {
            "source": str(tmp_path / "no such folder"), "destination": str(tmp_path / "d2")},
        "never": {"source": str(tmp_path / "src"), "destination": str(tmp_path / "d3")},
    }  # fmt: skip
    config = config_file(tmp_path, rclone_binary, jobs)
    assert run_cli(config, "run-job", "done").returncode == 0
    assert run_cli(config, "run-job", "broken-with-a-long-name").returncode == 1

    states = status_json(config)
    assert list(states) == ["done", "broken-with-a-long-name", "never"]
    assert (states["never"]["status"], states["never"]["run_id"]) == ("idle", None)
    assert states["never"]["job_id"] == "never"

    table = run_cli(config, "status").stdout  # stdout is a pipe here, as under cron or ssh
    done_at = states["done"]["last_success_at"]
    assert len(done_at) == len("2026-11-29T03:00:00Z")
    lines = table.splitlines()
    assert any("done" in line and "completed" in line and done_at in line for line in lines)
    assert any(
        "broken-with-a-long-name" in line and states["broken-with-a-long-name"]["error"] in line
        for line in lines
    ), table
    assert any("never" in line and "never run" in line for line in lines)
    assert "…" not in table
