"""The process edge: version checks, secrets kept out of errors, a timeout while verifying."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine import process
from mqtt_backup.engine.events import Event, PhaseStarted
from mqtt_backup.engine.orphans import start_time
from mqtt_backup.engine.process import parse_version, rclone_version
from mqtt_backup.engine.watchdog import Watchdog
from mqtt_backup.errors import RcloneError, RcloneNotFound
from tests.integration.rclone_servers import COMPARISONS, tree, wrap_rclone, write_tree
from tests.integration.test_engine_transfer import run_job


def fake_rclone(tmp_path: Path, output: str) -> str:
    script = tmp_path / "old-rclone"
    script.write_text(f"#!/bin/sh\necho '{output}'\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_version_of_real_rclone(rclone_binary: str) -> None:
    assert rclone_version(rclone_binary) >= (1, 60, 0)


def test_too_old_rclone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RcloneError, match="1.59.3 is too old"):
        rclone_version(fake_rclone(tmp_path, "rclone v1.59.3"))


def test_version_is_cached_until_the_binary_changes(tmp_path: Path) -> None:
    binary = fake_rclone(tmp_path, "rclone v1.70.0")
    cache = tmp_path / "cache"
    assert rclone_version(binary, cache_dir=cache) == (1, 70, 0)
    # Same file: the cached answer, without asking (this script would now say 1.71).
    script = Path(binary)
    stat = script.stat()
    script.write_text("#!/bin/sh\necho 'rclone v1.71.0'\n", encoding="utf-8")
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rclone_version(binary, cache_dir=cache) == (1, 70, 0)
    # An upgraded binary (another modification time): asked again.
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert rclone_version(binary, cache_dir=cache) == (1, 71, 0)
    # An upgrade to a version that is too old is refused even from the cache.
    fake_rclone(tmp_path, "rclone v1.59.0")
    with pytest.raises(RcloneError, match="too old"):
        rclone_version(binary, cache_dir=cache)
    with pytest.raises(RcloneError, match="too old"):
        rclone_version(binary, cache_dir=cache)


def test_missing_rclone(tmp_path: Path) -> None:
    with pytest.raises(RcloneNotFound, match="install it or set rclone.binary"):
        rclone_version(str(tmp_path / "absent"))


def test_parse_version() -> None:
    assert parse_version("rclone v1.75.2\n- os/version: debian") == (1, 75, 2)
    assert parse_version("rclone v1.60.1-DEV") == (1, 60, 1)
    assert parse_version("something else") is None


def test_secret_in_connection_string_stays_out_of_the_error(
    make_config: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"a"})
    destination = ":webdav,url='http://127.0.0.1:9',user=me,pass=SECRETSECRET:x"
    job = {"source": str(src), "destination": destination, "extra_args": ["--retries", "1"]}
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed"
    assert outcome.error and "SECRETSECRET" not in outcome.error
    assert destination not in outcome.error


def test_timeout_while_verifying_deletes_nothing(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=1_600_000_000)
    # A check that hangs until it is stopped: only the deadline can end the run.
    binary = wrap_rclone(tmp_path, rclone_binary, COMPARISONS, "exec sleep 30", after=False)
    job = {
        "source": str(src),
        "destination": str(dst),
        "timeout": "2s",
        "deletion": {"mode": "verify_then_delete"},
    }
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "failed"
    assert outcome.error == "timed out after 2s"
    assert tree(src) == files and tree(dst) == files


def test_cancel_while_verifying_deletes_nothing(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=1_600_000_000)
    cancel = threading.Event()

    def cancel_on_verify(event: Event) -> None:
        if event == PhaseStarted("verifying"):
            cancel.set()

    job = {"source": str(src), "destination": str(dst), "deletion": {"mode": "verify_then_delete"}}
    outcome, events = run_job(make_config, tmp_path, job, cancel=cancel, on_event=cancel_on_verify)
    assert outcome.status == "cancelled"
    assert PhaseStarted("deleting") not in events
    assert tree(src) == files


def test_nothing_starts_after_a_cancel(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cancel = threading.Event()
    cancel.set()
    result = process.run(
        ["/bin/sh", "-c", f"touch '{marker}'"], on_line=lambda _line: None, cancel=cancel
    )
    assert result.cancelled
    assert not marker.exists()


def test_a_quick_call_during_a_cancel_counts_as_cancelled(tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_on_output(_line: str) -> None:
        cancel.set()  # the command is still running, about to exit successfully

    result = process.run(
        ["/bin/sh", "-c", "echo started >&2; sleep 0.2"], on_line=cancel_on_output, cancel=cancel
    )
    assert result.cancelled


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_exit_code_and_cancel_with_and_without_pidfd(
    pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfd:

        def unavailable(_pid: int) -> int:
            raise OSError("pidfd_open is not available")

        monkeypatch.setattr(os, "pidfd_open", unavailable, raising=False)
    never = threading.Event()
    done = process.run(["/bin/sh", "-c", "exit 3"], on_line=lambda _line: None, cancel=never)
    assert (done.returncode, done.cancelled) == (3, False)

    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    stopped = process.run(
        ["/bin/sh", "-c", "sleep 30"], on_line=lambda _line: None, cancel=cancel, grace=1.0
    )
    assert stopped.cancelled
    assert stopped.returncode != 0


def test_waiting_works_with_descriptors_past_1024() -> None:
    # A daemon in a container (nofile 1048576) can hand rclone's pidfd a number that
    # select() cannot watch.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        done = process.run(
            ["/bin/sh", "-c", "exit 4"], on_line=lambda _line: None, cancel=threading.Event()
        )
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert done.returncode == 4


def stats_loop(counting: bool, rounds: int) -> list[str]:
    """A shell command printing a stats line every 0.2 s: rising bytes, or the same bytes."""
    value = "$i" if counting else "5"
    script = (
        f"i=0; while [ $i -lt {rounds} ]; do i=$((i+1)); "
        f"echo '{{\"stats\":{{\"bytes\":'{value}'}}}}' >&2; sleep 0.2; done"
    )
    return ["/bin/sh", "-c", script]


def test_a_watched_process_that_stops_moving_is_stopped_as_stalled() -> None:
    started = time.monotonic()
    result = process.run(
        stats_loop(counting=False, rounds=1000),
        on_line=lambda _line: None,
        cancel=threading.Event(),
        watchdog=Watchdog(1.0),
        grace=1.0,
    )
    assert (result.stalled, result.timed_out, result.cancelled) == (True, True, False)
    assert result.returncode != 0
    assert time.monotonic() - started < 1.0 + 3.0


def test_a_watched_process_that_keeps_moving_runs_to_its_end() -> None:
    # 2.4 s of reports that each move: more than twice the stall limit, never stalled.
    result = process.run(
        stats_loop(counting=True, rounds=12),
        on_line=lambda _line: None,
        cancel=threading.Event(),
        watchdog=Watchdog(1.0),
    )
    assert (result.returncode, result.stalled, result.timed_out) == (0, False, False)


def test_each_process_is_told_with_its_start_time() -> None:
    told: list[tuple[int, int]] = []
    seen: list[int | None] = []

    def look(_line: str) -> None:
        seen.append(start_time(told[0][0]) if told else None)

    result = process.run(
        ["/bin/sh", "-c", "echo running >&2; sleep 0.5"],
        on_line=look,
        cancel=threading.Event(),
        on_start=lambda pid, started: told.append((pid, started)),
    )
    assert result.returncode == 0
    (pid, started), = told
    assert seen == [started]  # the very process, while it ran
