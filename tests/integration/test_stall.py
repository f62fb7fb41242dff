"""The stall watchdog against real rclone: a NAS that goes away, an endpoint that refuses."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.state import JobState
from tests.integration.rclone_servers import (
    COMPARISONS,
    SftpServer,
    free_port,
    sftp_server,
    tree,
    wrap_rclone,
    write_tree,
)
from tests.integration.test_engine_transfer import run_job

__all__ = ["sftp_server"]

# Time for the stop sequence (SIGINT, and SIGTERM after 3 s) on a loaded machine.
STOP_GRACE = 8.0


class StateLog:
    """Every state the executor publishes; kills the server on the first bytes moved."""

    def __init__(self, server: SftpServer) -> None:
        self.server = server
        self.states: list[JobState] = []
        self.killed_at: float | None = None

    def state_changed(self, state: JobState) -> None:
        self.states.append(state)
        if self.killed_at is None and state.status == "running" and state.bytes_transferred > 0:
            self.server.kill()
            self.killed_at = time.monotonic()

    def run_finished(self, state: JobState) -> None:
        pass


def test_a_nas_that_goes_away_mid_run_fails_as_stalled_with_its_error_shown_live(
    make_config: Any, tmp_path: Path, sftp_server: SftpServer
) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"f{n}.bin": os.urandom(2 * 1024 * 1024) for n in range(6)})
    job = {
        "source": str(src),
        "destination": sftp_server.remote("backup"),
        "stall_timeout": "6s",
        # Short timeouts and one low-level retry make rclone report the lost connection
        # within a second or two (by default it takes a minute), so that the running state
        # can show it before the end; the watchdog itself does not depend on any of it.
        "extra_args": [
            "--bwlimit", "1M", "--timeout", "2s", "--contimeout", "1s",
            "--low-level-retries", "1",
        ],  # fmt: skip
    }
    config = make_config({"jobs": {"t": job}})
    log = StateLog(sftp_server)
    with History(config.state_dir) as history:
        executor = JobExecutor(config, history, sinks=[log])
        final = executor.run("t", "cli")
        finished_at = time.monotonic()
        assert executor.sinks.drain(5)
        (record,) = history.runs("t")

    assert log.killed_at is not None, "the transfer never moved a byte"
    assert final.status == "failed"
    assert final.error is not None
    assert final.error.startswith("no progress for 6s (rclone: ")
    assert "connection lost" in final.error or "connection refused" in final.error
    assert final.error.endswith("; stopped")
    assert finished_at - log.killed_at < 6 + STOP_GRACE
    assert record.status == "failed" and record.error == final.error

    # Before it failed, the running state already said why it was slow.
    live = [s for s in log.states if s.status == "running" and s.error]
    assert live, "no running state carried rclone's error"
    assert live[-1].errors >= 1
    assert "connection" in (live[-1].error or "")
    for state in log.states:
        assert "pass=" not in (state.error or "")
        assert SftpServer.PASSWORD not in state.to_json()


def test_an_endpoint_that_refuses_connections_fails_as_stalled(
    make_config: Any, tmp_path: Path
) -> None:
    # rclone retries a refusing S3 endpoint without a word until the job's timeout.
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha"})
    endpoint = f"http://127.0.0.1:{free_port()}"
    destination = (
        f":s3,provider=Other,endpoint='{endpoint}',access_key_id=k,"
        "secret_access_key=SECRETKEY:bucket/backup/"
    )
    job = {"source": str(src), "destination": destination, "stall_timeout": "3s", "timeout": "5m"}
    started = time.monotonic()
    outcome, _ = run_job(make_config, tmp_path, job)
    elapsed = time.monotonic() - started
    assert outcome.status == "failed"
    assert outcome.error == "no progress for 3s; stopped"
    assert outcome.retryable is True
    assert elapsed < 3 + STOP_GRACE + 2  # + start-up and the first stats report


def test_a_slow_transfer_that_keeps_moving_is_not_stopped(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.bin": os.urandom(3 * 1024 * 1024)}
    write_tree(src, files)
    # About 3 s at 1 MiB/s: longer than the stall timeout, but moving all the time.
    job = {
        "source": str(src),
        "destination": str(dst),
        "stall_timeout": "2s",
        "extra_args": ["--bwlimit", "1M"],
    }
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == files


def test_quiet_listings_are_not_watched(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # Listings print no stats: one that takes longer than the stall timeout is still fine.
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=1_600_000_000)
    binary = wrap_rclone(tmp_path, rclone_binary, "lsjson", "sleep 3", after=False)
    job = {
        "source": str(src),
        "destination": str(dst),
        "stall_timeout": "2s",
        "deletion": {"mode": "verify_then_delete"},
    }
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert outcome.deletion.files_deleted == 2
    assert tree(src) == {} and tree(dst) == files


def test_a_stalled_check_deletes_nothing(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=1_600_000_000)
    # A check that hangs without a report, as against a destination that stopped answering.
    binary = wrap_rclone(tmp_path, rclone_binary, COMPARISONS, "exec sleep 60", after=False)
    job = {
        "source": str(src),
        "destination": str(dst),
        "stall_timeout": "2s",
        "deletion": {"mode": "verify_then_delete"},
    }
    cancel = threading.Event()
    started = time.monotonic()
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary}, cancel=cancel)
    assert outcome.status == "failed"
    assert outcome.error == "no progress for 2s; stopped"
    assert outcome.retryable is True
    assert outcome.deletion.files_deleted == 0
    assert tree(src) == files
    assert time.monotonic() - started < 2 + STOP_GRACE + 5
