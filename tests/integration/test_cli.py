"""The command line as a user meets it: real rclone, real processes, real signals."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import (
    cli_argv,
    cli_env,
    make_tree,
    run_cli,
    runs_of,
    start_cli,
    tree,
    wait_for,
    write_config,
)

FILES = {
    "a.txt": b"alpha\n",
    "nested/deeper/b.bin": os.urandom(50_000),
    "with space/é ü.txt": b"unicode\n",
    "empty": b"",
}


@pytest.fixture
def job_config(tmp_path: Path, rclone_binary: str):  # type: ignore[no-untyped-def]
    def build(**job: Any) -> Path:
        config = {
            "instance": "cli",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "jobs": {
                "docs": {
                    "name": "Documents",
                    "source": str(tmp_path / "src"),
                    "destination": str(tmp_path / "dst"),
                    **job,
                }
            },
        }
        return write_config(tmp_path / "mqtt-backup.yaml", config)

    return build


def slow_source(root: Path) -> None:
    """Enough data that a 1 MiB/s limit keeps the transfer busy for several seconds."""
    make_tree(root, {f"big{i}.bin": os.urandom(2 * 1024 * 1024) for i in range(4)})


def test_validate_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("jobs:\n  a: {source: /s}\n  B: {source: /s, destination: /d}\n")
    result = run_cli(config, "validate")
    assert result.returncode == 2
    assert "jobs.a.destination: required key is missing (line 2)" in result.stderr
    assert "jobs.B: 'B' is not a valid id" in result.stderr


def test_validate_ok(job_config) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(job_config(), "validate")
    assert result.returncode == 0, result.stderr
    assert "OK, 1 job(s): docs" in result.stdout


def test_run_job_copies_and_records_history(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    make_tree(tmp_path / "src", FILES)
    config = job_config()
    result = run_cli(config, "run-job", "docs")
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "dst") == FILES
    assert "docs: completed" in result.stdout
    # Not a terminal: plain log lines instead of a progress bar.
    assert "job docs: running" in result.stderr or "job docs: transferring" in result.stderr

    history = run_cli(config, "history", "docs")
    assert history.returncode == 0
    assert "completed" in history.stdout
    assert "cli" in history.stdout

    status = run_cli(config, "status", "--json")
    state = json.loads(status.stdout)["docs"]
    assert state["status"] == "completed"
    assert state["files_transferred"] == len(FILES)
    assert state["trigger"] == "cli"


def test_run_job_without_a_terminal_or_schedule_skips_rich_and_apscheduler(
    tmp_path: Path,
    job_config,  # type: ignore[no-untyped-def]
) -> None:
    # Each costs tens of milliseconds of start-up that a cron-driven run-job never uses.
    make_tree(tmp_path / "src", FILES)
    code = (
        "import sys; from mqtt_backup.cli import main; "
        f"code = main(['-c', {str(job_config())!r}, 'run-job', 'docs']); "
        "print(sorted(m for m in ('rich', 'apscheduler') if m in sys.modules), code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=cli_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[] 0"
    assert tree(tmp_path / "dst") == FILES


def test_unknown_job_is_a_usage_error(job_config) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(job_config(), "run-job", "nope")
    assert result.returncode == 2
    assert "unknown job 'nope' (jobs: docs)" in result.stderr


def test_failed_job_exits_1_with_a_sentence(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(job_config(), "run-job", "docs")
    assert result.returncode == 1
    assert "docs: failed" in result.stdout
    assert "not found" in result.stdout
    assert str(tmp_path / "src") not in result.stdout  # a sentence, not a command line


def test_dry_run_changes_nothing(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    make_tree(tmp_path / "src", FILES)
    config = job_config(deletion={"mode": "verify_then_delete"})
    result = run_cli(config, "run-job", "docs", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "src") == FILES
    assert not (tmp_path / "dst").exists() or tree(tmp_path / "dst") == {}
    assert "docs: dry run completed" in result.stdout
    assert "would transfer 4 files" in result.stdout
    status = run_cli(config, "status", "--json")
    state = json.loads(status.stdout)["docs"]
    assert state["dry_run"] is True and state["status"] == "completed"
    assert state["last_success_at"] is None  # a dry run is never a success


def test_second_run_of_a_running_job_is_refused(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    slow_source(tmp_path / "src")
    config = job_config(extra_args=["--bwlimit", "2M"])
    first = start_cli(config, "run-job", "docs")
    try:
        wait_for(lambda: runs_of(tmp_path / "state", "docs"), what="the first run to start")
        second = run_cli(config, "run-job", "docs")
        assert second.returncode == 1
        assert "job 'docs' is already running" in second.stderr
        assert "not started" in second.stderr
        assert first.wait(60) == 0
    finally:
        first.kill()
    runs = runs_of(tmp_path / "state", "docs")
    assert [r.status for r in runs] == ["completed"]


def test_kill_9_leaves_no_stale_lock(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    slow_source(tmp_path / "src")
    config = job_config(extra_args=["--bwlimit", "1M"])
    first = start_cli(config, "run-job", "docs")
    wait_for(lambda: runs_of(tmp_path / "state", "docs"), what="the first run to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # rclone, in its own process group, may outlive a SIGKILLed parent for a moment; the
    # lock belongs to mqtt-backup's own process and is gone with it.
    again = run_cli(config.parent / config.name, "run-job", "docs", timeout=120)
    assert again.returncode in (0, 1), again.stderr
    assert "already running" not in again.stderr
    runs = runs_of(tmp_path / "state", "docs")
    assert runs[-1].status == "interrupted"
    assert runs[-1].error == "the process running this job stopped unexpectedly"


def test_sigint_cancels_and_deletes_nothing(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    slow_source(tmp_path / "src")
    before = tree(tmp_path / "src")
    config = job_config(extra_args=["--bwlimit", "1M"], deletion={"mode": "verify_then_delete"})
    proc = start_cli(config, "run-job", "docs")
    wait_for(lambda: runs_of(tmp_path / "state", "docs"), what="the run to start")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "docs: cancelled" in out
    assert tree(tmp_path / "src") == before
    assert runs_of(tmp_path / "state", "docs")[0].status == "cancelled"


def test_progress_bar_in_a_terminal(tmp_path: Path, job_config) -> None:  # type: ignore[no-untyped-def]
    make_tree(tmp_path / "src", {f"f{i}.bin": os.urandom(1024 * 1024) for i in range(3)})
    config = job_config(extra_args=["--bwlimit", "1M"])
    leader, follower = pty.openpty()
    env = cli_env() | {"COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        cli_argv(config, "run-job", "docs"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    proc.wait(30)
    os.close(leader)
    text = output.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "━" in text  # rich's bar
    assert "transferring" in text
    assert "MiB" in text
    assert "docs: completed" in text
