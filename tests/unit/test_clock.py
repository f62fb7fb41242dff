"""Noticing a wall clock that was wrong: times from the future, and the clock being set back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from mqtt_backup.scheduling.clock import ClockWatch, from_the_future

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_only_times_well_ahead_count_as_from_the_future() -> None:
    assert from_the_future(NOW + timedelta(days=3 * 365), NOW)
    assert from_the_future(NOW + timedelta(minutes=6), NOW)
    # What NTP corrects on a healthy host is no sign of a wrong clock.
    assert not from_the_future(NOW + timedelta(minutes=4), NOW)
    assert not from_the_future(NOW - timedelta(days=1), NOW)
    assert not from_the_future(None, NOW)


def test_a_clock_set_back_is_noticed_once() -> None:
    offset = [1000.0]
    watch = ClockWatch(lambda _s: None, read=lambda: offset[0])
    watch.start()
    try:
        offset[0] -= 3 * 365 * 86400
        assert watch.check() == 3 * 365 * 86400
        assert watch.check() == 0.0
    finally:
        watch.stop()


def test_small_steps_and_forward_jumps_are_left_alone() -> None:
    offset = [0.0]
    watch = ClockWatch(lambda _s: None, read=lambda: offset[0])
    watch.start()
    try:
        offset[0] -= 2.0  # NTP stepping a drifted clock
        assert watch.check() == 0.0
        offset[0] += 86400  # a suspended host woke up a day later
        assert watch.check() == 0.0
    finally:
        watch.stop()


def test_the_watch_thread_reports_a_set_back() -> None:
    offset = [0.0]
    reported: list[float] = []
    seen = threading.Event()

    def on_set_back(seconds: float) -> None:
        reported.append(seconds)
        seen.set()

    watch = ClockWatch(on_set_back, interval=0.01, read=lambda: offset[0])
    watch.start()
    try:
        offset[0] = -3600.0
        assert seen.wait(5)
        assert reported == [3600.0]
    finally:
        watch.stop()
    assert not any(t.name == "clock-watch" for t in threading.enumerate())
