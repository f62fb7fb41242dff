"""The stall watchdog's logic on a fake clock, fed lines in rclone's own stats format."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.watchdog import Watchdog, moved, stall_limit, stall_sentence
from tests.unit.test_engine_stats import sample_lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats_line(**stats: Any) -> str:
    """A stats line as rclone 1.75 writes it under --use-json-log."""
    base = {"bytes": 0, "checks": 0, "transfers": 0, "deletes": 0, "errors": 0, "listed": 0}
    return json.dumps({"level": "notice", "msg": "stats", "stats": base | stats})


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_silence_from_the_start_is_a_stall(clock: Clock) -> None:
    dog = Watchdog(10, clock)
    clock.now += 9.9
    assert not dog.stalled()
    clock.now += 0.1
    assert dog.stalled()


def test_each_counter_that_goes_up_resets_the_clock(clock: Clock) -> None:
    dog = Watchdog(10, clock)
    dog.feed(stats_line())
    steps = [
        {"bytes": 100},
        {"bytes": 100, "checks": 1},
        {"bytes": 100, "checks": 1, "transfers": 1},
        {"bytes": 100, "checks": 1, "transfers": 1, "deletes": 1},
        {"bytes": 100, "checks": 1, "transfers": 1, "deletes": 1, "listed": 7},
    ]
    for counts in steps:
        clock.now += 9
        dog.feed(stats_line(**counts))
        clock.now += 9
        assert not dog.stalled(), counts
    clock.now += 1
    assert dog.stalled()


def test_the_same_counters_are_no_progress(clock: Clock) -> None:
    dog = Watchdog(10, clock)
    for _ in range(11):
        dog.feed(stats_line(bytes=5_406_720, listed=6))
        clock.now += 1
    assert dog.stalled()


def test_errors_and_falling_counters_are_no_progress(clock: Clock) -> None:
    # What a vanished sftp server looks like: errors rise, bytes stay or drop on a retry.
    dog = Watchdog(10, clock)
    dog.feed(stats_line(bytes=500))
    for errors, bytes_ in ((1, 500), (2, 300), (3, 300), (4, 200)):
        clock.now += 3
        dog.feed(stats_line(bytes=bytes_, errors=errors, lastError="connection lost"))
    assert dog.stalled()
    # After a drop, moving bytes again is progress: data flows.
    dog.feed(stats_line(bytes=250, errors=4))
    assert not dog.stalled()


def test_other_lines_neither_feed_nor_break_it(clock: Clock) -> None:
    dog = Watchdog(10, clock)
    for line in (
        '{"level":"error","msg":"Failed to copy: connection lost"}',
        "2024/01/01 10:00:00 Failed to copy: not json",
        '{"stats": "not an object"}',
        '{"stats": {broken',
        "",
    ):
        dog.feed(line)
    clock.now += 10
    assert dog.stalled()
    assert dog.last_error is None


def test_remembers_rclones_last_error(clock: Clock) -> None:
    dog = Watchdog(10, clock)
    dog.feed(stats_line(errors=1, lastError="dial tcp 127.0.0.1:2222: connect: connection refused"))
    dog.feed(stats_line(errors=1))  # rclone keeps lastError; a line without it changes nothing
    assert dog.last_error == "dial tcp 127.0.0.1:2222: connect: connection refused"


@pytest.mark.parametrize("version", ["160", "175"])
def test_captured_copies_make_progress(version: str, clock: Clock) -> None:
    dog = Watchdog(10, clock)
    progressed = []
    for line in sample_lines(f"rclone{version}-copy-json-stats-notice.txt"):
        clock.now += 9
        dog.feed(line)
        progressed.append(dog.idle() == 0)
    assert any(progressed)
    assert not dog.stalled()


def test_moved() -> None:
    assert not moved(None, (0, 0))
    assert moved(None, (0, 3))
    assert moved((1, 2), (1, 3))
    assert not moved((1, 2), (0, 2))
    assert not moved((1, 2), (1, 2))


def test_stall_limit_of_the_job_else_the_global_one() -> None:
    job = JobConfig(source="/a", destination="/b")
    assert stall_limit(job, RcloneConfig()) == timedelta(minutes=10)
    assert stall_limit(job, RcloneConfig(stall_timeout="2m")) == timedelta(minutes=2)
    assert stall_limit(job, RcloneConfig(stall_timeout=0)) is None
    own = JobConfig(source="/a", destination="/b", stall_timeout="30s")
    assert stall_limit(own, RcloneConfig(stall_timeout=0)) == timedelta(seconds=30)
    off = JobConfig(source="/a", destination="/b", stall_timeout="0s")
    assert stall_limit(off, RcloneConfig()) is None


def test_stall_sentence() -> None:
    refused = "dial tcp 127.0.0.1:2222: connect: connection refused"
    assert (
        stall_sentence(timedelta(minutes=10), refused)
        == "no progress for 10m (rclone: dial tcp 127.0.0.1:2222: connect: connection refused);"
        " stopped"
    )
    assert stall_sentence(timedelta(seconds=90), None) == "no progress for 1m30s; stopped"
