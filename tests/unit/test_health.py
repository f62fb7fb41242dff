"""The heartbeat file and the healthcheck that reads it: what a container's HEALTHCHECK sees."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mqtt_backup import health
from mqtt_backup.health import MAX_AGE, Beat, Heartbeat, check, heartbeat_path, read_beat

NOW = datetime(2026, 11, 29, 12, 0, 0, 250_000, tzinfo=UTC)


def write_beat(state_dir: Path, text: str) -> None:
    heartbeat_path(state_dir).write_text(text, encoding="utf-8")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def wait_for_beat_after(state_dir: Path, moment: datetime, timeout: float = 5.0) -> Beat:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beat = read_beat(state_dir)
        if beat is not None and beat.at > moment:
            return beat
        time.sleep(0.01)
    pytest.fail(f"no heartbeat newer than {moment} within {timeout} s")


# the file


def test_a_beat_is_read_back_as_written(tmp_path: Path) -> None:
    write_beat(tmp_path, "2026-11-29T12:00:00.250Z 4242\n")
    assert read_beat(tmp_path) == Beat(NOW, 4242, stopped=False)
    write_beat(tmp_path, "2026-11-29T12:00:00.250Z 4242 stopped\n")
    assert read_beat(tmp_path) == Beat(NOW, 4242, stopped=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-29T12:00:00Z",  # no pid
        "2026-11-29T12:00:00Z pid",
        "yesterday 4242",
        "2026-11-29T12:00:00 4242",  # no zone: no moment anyone can compare with
        "\x00\x00\x00",
    ],
)
def test_an_unreadable_heartbeat_counts_as_none(tmp_path: Path, text: str) -> None:
    write_beat(tmp_path, text)
    assert read_beat(tmp_path) is None
    assert check(tmp_path) == (
        f"no heartbeat in {heartbeat_path(tmp_path)}: is mqtt-backup serve running?"
    )


# check


def test_no_heartbeat_file_means_no_serve(tmp_path: Path) -> None:
    assert check(tmp_path) == (
        f"no heartbeat in {tmp_path / 'heartbeat'}: is mqtt-backup serve running?"
    )


def test_a_fresh_beat_of_a_live_process_is_healthy(tmp_path: Path) -> None:
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW + MAX_AGE) is None


def test_a_beat_older_than_the_limit_is_unhealthy(tmp_path: Path) -> None:
    # A wedged scheduler stops the beats while its process still lives.
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {os.getpid()}\n")
    late = NOW + MAX_AGE + timedelta(seconds=1)
    assert check(tmp_path, now=late) == (
        f"the last heartbeat is 21s old ({heartbeat_path(tmp_path)})"
    )


def test_a_stopped_serve_is_unhealthy_at_once(tmp_path: Path) -> None:
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {os.getpid()} stopped\n")
    assert check(tmp_path, now=NOW) == (
        f"mqtt-backup serve (pid {os.getpid()}) stopped at 2026-11-29T12:00:00Z"
    )


def test_a_fresh_beat_of_a_dead_process_is_unhealthy(tmp_path: Path) -> None:
    # kill -9 leaves a beat that looks fresh for up to MAX_AGE.
    pid = dead_pid()
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {pid}\n")
    assert check(tmp_path, now=NOW) == f"mqtt-backup serve (pid {pid}) is not running"


def test_a_process_of_another_user_counts_as_alive() -> None:
    # Signal 0 to pid 1 is refused to an ordinary user (EPERM), yet the process exists.
    assert health.pid_alive(1)
    assert not health.pid_alive(dead_pid())


def test_a_clock_set_back_is_unhealthy_until_the_next_beat(tmp_path: Path) -> None:
    # A serve that wedged just before the clock went back must not pass for healthy until
    # the clock reaches its last beat; a live one beats again within seconds.
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW - timedelta(hours=1)) == (
        f"the last heartbeat is dated 3600s ahead of the clock ({heartbeat_path(tmp_path)})"
    )
    write_beat(tmp_path, f"2026-11-29T11:00:00.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW - timedelta(hours=1)) is None


def test_a_beat_a_little_ahead_of_the_clock_is_fresh(tmp_path: Path) -> None:
    write_beat(tmp_path, f"2026-11-29T12:00:05.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW) is None


def test_a_clock_set_forward_is_unhealthy_until_the_next_beat(tmp_path: Path) -> None:
    write_beat(tmp_path, f"2026-11-29T12:00:00.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW + timedelta(hours=1)) == (
        f"the last heartbeat is 3600s old ({heartbeat_path(tmp_path)})"
    )
    write_beat(tmp_path, f"2026-11-29T13:00:00.250Z {os.getpid()}\n")
    assert check(tmp_path, now=NOW + timedelta(hours=1)) is None


# the Heartbeat thread


def test_the_heartbeat_beats_at_once_and_then_on_its_interval(tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    heartbeat = Heartbeat(tmp_path, alive=lambda: True, interval=0.05)
    heartbeat.start()
    try:
        first = read_beat(tmp_path)
        assert first is not None
        assert first.pid == os.getpid()
        assert not first.stopped
        assert first.at > before
        assert check(tmp_path) is None
        wait_for_beat_after(tmp_path, first.at)
    finally:
        heartbeat.stop()
    # Written whole and renamed into place: no temporary file stays behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heartbeat"]


def test_stop_marks_the_file_so_the_healthcheck_fails_at_once(tmp_path: Path) -> None:
    heartbeat = Heartbeat(tmp_path, alive=lambda: True, interval=60)
    heartbeat.start()
    heartbeat.stop()
    beat = read_beat(tmp_path)
    assert beat is not None
    assert beat.stopped
    problem = check(tmp_path)
    assert problem is not None
    assert problem.startswith(f"mqtt-backup serve (pid {os.getpid()}) stopped at ")


def test_a_scheduler_that_is_not_running_gets_no_beat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = [True]
    heartbeat = Heartbeat(tmp_path, alive=lambda: running[0], interval=0.05)

    def withheld() -> int:
        return sum("heartbeat withheld" in r.getMessage() for r in caplog.records)

    def wait_until_withheld(count: int) -> None:
        deadline = time.monotonic() + 5
        while withheld() < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert withheld() >= count

    with caplog.at_level(logging.WARNING, logger="mqtt_backup.health"):
        heartbeat.start()
        try:
            running[0] = False
            wait_until_withheld(1)
            last = read_beat(tmp_path)
            wait_until_withheld(3)
            # The file ages, so the healthcheck fails once MAX_AGE has passed.
            assert read_beat(tmp_path) == last
            assert "the scheduler is not running; heartbeat withheld" in caplog.text
            running[0] = True
            assert last is not None
            wait_for_beat_after(tmp_path, last.at)
        finally:
            heartbeat.stop()


def test_an_unwritable_state_dir_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone"
    heartbeat = Heartbeat(gone, alive=lambda: True, interval=60)
    with caplog.at_level(logging.WARNING, logger="mqtt_backup.health"):
        heartbeat.start()
        heartbeat.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(w.startswith("cannot write the heartbeat file: ") for w in warnings)
    assert check(gone) is not None


def test_start_and_stop_are_idempotent(tmp_path: Path) -> None:
    heartbeat = Heartbeat(tmp_path, alive=lambda: True, interval=60)
    heartbeat.start()
    heartbeat.start()
    heartbeat.stop()
    heartbeat.stop()
    beat = read_beat(tmp_path)
    assert beat is not None
    assert beat.stopped
