"""No rclone outlives mqtt-backup: a parent-death signal, and recovery by pid and start time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine.orphans import start_time, stop_leftover
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from tests.integration.cli_helpers import make_tree, start_cli, wait_for, write_config
from tests.integration.serve_helpers import Daemon, child_pids
from tests.integration.serve_helpers import make_config as serve_config

SLOW = ["--bwlimit", "100k"]


def quiet_rclone(binary: str) -> dict[str, Any]:
    # rclone writes nothing for a minute: a dead reader of its stderr cannot end it with
    # SIGPIPE, so only the parent-death signal can.
    return {"binary": binary, "stats_interval": "1m", "stall_timeout": 0}


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    return start_time(pid) is not None


def rclone_copies(parent: int) -> list[int]:
    """The parent's child processes that are an ``rclone copy``."""
    found = []
    for pid in child_pids(parent):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if len(argv) > 1 and argv[1] == b"copy":
                found.append(pid)
    return found


def recorded(state_dir: Path) -> set[tuple[int, int]]:
    """The rclone processes history holds for runs that have not finished."""
    if not (state_dir / "history.sqlite3").exists():
        return set()
    with History(state_dir) as history:
        return {p for run in history.running_runs() for p in history.processes(run.run_id)}


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test, should one have outlived its parent after all."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def slow_job(tmp_path: Path) -> dict[str, Any]:
    src = tmp_path / "src"
    make_tree(src, {"big.bin": os.urandom(4 * 1024 * 1024)})  # 40 s at 100 KiB/s
    return {"source": str(src), "destination": str(tmp_path / "dst"), "extra_args": SLOW}


def test_rclone_dies_with_a_killed_run_job(
    tmp_path: Path, rclone_binary: str, leftovers: list[int]
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path / "mqtt-backup.yaml",
        {
            "state_dir": str(state_dir),
            "rclone": quiet_rclone(rclone_binary),
            "jobs": {"docs": slow_job(tmp_path)},
        },
    )
    cli = start_cli(config, "run-job", "docs")
    try:
        (copy,) = wait_for(lambda: rclone_copies(cli.pid), what="rclone copy to start")
        leftovers.append(copy)
        # Recorded with its start time, for a recovery should the signal not come.
        wait_for(lambda: (copy, start_time(copy)) in recorded(state_dir), what="the record")
    finally:
        cli.kill()
        cli.communicate(timeout=10)
    wait_for(lambda: not alive(copy), timeout=5, what="rclone to end with mqtt-backup")


def test_rclone_started_by_a_worker_thread_of_serve_dies_with_it(
    tmp_path: Path, rclone_binary: str, leftovers: list[int]
) -> None:
    # serve runs each job on a pool thread: the kernel ties the signal to that thread.
    job = slow_job(tmp_path) | {"schedule": "every 1s"}
    config = serve_config(tmp_path, rclone_binary, {"k": job})
    config["rclone"] = quiet_rclone(rclone_binary)
    daemon = Daemon(tmp_path, config).start()
    try:
        (copy,) = wait_for(lambda: rclone_copies(daemon.pid), what="rclone copy to start")
        leftovers.append(copy)
    finally:
        assert daemon.process is not None
        daemon.process.kill()  # only serve itself, not its children
        daemon.process.wait(10)
        daemon.process = None
    wait_for(lambda: not alive(copy), timeout=5, what="rclone to end with serve")


def start_dead_runs_rclone(
    tmp_path: Path, rclone_binary: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A real, slow rclone copy without a parent-death signal, as if that had failed."""
    job = slow_job(tmp_path)
    rclone = subprocess.Popen(
        [rclone_binary, "copy", *SLOW, job["source"], job["destination"]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return rclone, job


def record_dead_run(history: History, pid: int, started: int) -> None:
    """What a run-job killed with SIGKILL leaves in history: a running run and its rclone."""
    running = st.started(st.initial("docs", "docs"), "dead1", "cli", st.utcnow())
    history.start_run(running)
    history.add_process("dead1", pid, started)


def test_recovery_stops_the_rclone_of_a_dead_run(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    rclone, job = start_dead_runs_rclone(tmp_path, rclone_binary)
    try:
        started = wait_for(lambda: start_time(rclone.pid), what="rclone to start")
        config = make_config({"jobs": {"docs": job}})
        with History(config.state_dir) as history:
            record_dead_run(history, rclone.pid, started)
            (state,) = JobExecutor(config, history).recover()
            assert state.status == "interrupted"
            assert rclone.wait(timeout=5) is not None
            (run,) = history.runs("docs")
            assert run.status == "interrupted"
            assert history.processes("dead1") == []
    finally:
        rclone.kill()
        rclone.wait()


def test_recovery_spares_a_process_whose_start_time_differs(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # The same pid with another start time is another process that reuses the number.
    rclone, job = start_dead_runs_rclone(tmp_path, rclone_binary)
    try:
        started = wait_for(lambda: start_time(rclone.pid), what="rclone to start")
        config = make_config({"jobs": {"docs": job}})
        with History(config.state_dir) as history:
            record_dead_run(history, rclone.pid, started - 1)
            (state,) = JobExecutor(config, history).recover()
            assert state.status == "interrupted"
        assert rclone.poll() is None
        assert start_time(rclone.pid) == started
    finally:
        rclone.kill()
        rclone.wait()


def test_a_leftover_that_ignores_sigterm_is_killed() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        started = start_time(stubborn.pid)
        assert started is not None
        assert stop_leftover(stubborn.pid, started, grace=0.5)
        assert stubborn.wait(timeout=5) == -signal.SIGKILL
        assert not stop_leftover(stubborn.pid, started, grace=0.5)  # gone: nothing to do
    finally:
        stubborn.kill()
        stubborn.wait()
