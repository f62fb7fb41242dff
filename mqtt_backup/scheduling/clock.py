"""A wall clock that can be wrong: times recorded in the future, and the clock being set back.

A Raspberry Pi without a working real-time clock may boot years ahead (or behind) until NTP
sets its clock. Runs started meanwhile are recorded with those times, and a scheduler that
trusted them would wait years for the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

# A recorded time this far ahead of now cannot come from a clock that was right; smaller
# differences are what NTP corrects on a healthy host and are not worth acting on.
SLACK = timedelta(minutes=5)
CHECK_INTERVAL = 30.0


def from_the_future(moment: datetime | None, now: datetime) -> bool:
    """True for a time more than SLACK after ``now``: a clock was wrong, then or now."""
    return moment is not None and moment > now + SLACK


def wall_minus_monotonic() -> float:
    """Changes only when someone sets the wall clock (or the host was suspended)."""
    return time.time() - time.monotonic()


class ClockWatch:
    """Calls ``on_set_back(seconds)`` from its own thread when the wall clock is set back.

    The wall clock is compared with the monotonic one, which nobody can set. A suspended host
    only moves the wall clock forward, and a clock that moved forward needs nothing from us:
    the scheduler sees the fires that passed as missed ones.
    """

    def __init__(
        self,
        on_set_back: Callable[[float], None],
        *,
        interval: float = CHECK_INTERVAL,
        read: Callable[[], float] = wall_minus_monotonic,
    ) -> None:
        self._on_set_back = on_set_back
        self._interval = interval
        self._read = read
        self._offset = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._offset = self._read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="clock-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def check(self) -> float:
        """Seconds the clock was set back since the last check; 0.0 for less than SLACK."""
        offset = self._read()
        back, self._offset = self._offset - offset, offset
        return back if back > SLACK.total_seconds() else 0.0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            back = self.check()
            if not back:
                continue
            try:
                self._on_set_back(back)
            except Exception:  # the watch must outlive one failed rescheduling
                logger.exception("rescheduling after the clock was set back failed")
