"""The outbox: every ping waits in the store (store.py) until its receiver took it.

- ``put`` stores a ping (a sink's thread, a few ms) and wakes the delivery thread; nothing
  that puts ever waits for the network.
- The delivery thread hands the oldest waiting ping of each receiver to a few worker
  threads, so a slow receiver holds up only its own pings, and the pings of one receiver
  go out in the order they were put: a start never lands after its run's fail.
- A ping that could not be delivered is tried again after an exponential back-off with
  jitter (2 s, 4 s, … up to ``max_delay``) until it is delivered, refused (HTTP 4xx other
  than 408, 425 and 429: trying again cannot help), or older than ``max_age``. Each of those
  ends is logged; of the failures only the first of each ping.
- Several processes (``serve`` and a ``run-job`` from cron) share the store: each ping is
  sent by one of them, and at least once (the store's leases). A key stored once is never
  stored again: in the normal case every ping is delivered exactly once.
"""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mqtt_backup.config.durations import format_duration
from mqtt_backup.config.monitors import MonitorDelivery
from mqtt_backup.sinks.monitors.http import Sent, send
from mqtt_backup.sinks.monitors.report import Request
from mqtt_backup.sinks.monitors.store import Claimed, Horizon, Ping, PingStore

logger = logging.getLogger(__name__)

WORKERS = 4
FIRST_RETRY = 2.0
# How often waiting pings are looked at when nothing wakes the thread: pings another
# process put and left behind, and leases that ran out.
POLL_SECONDS = 10.0
# A retry time or lease further ahead than it can be by this much means the clock went back.
CLOCK_SLACK = 60.0


def backoff(attempt: int, max_delay: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempt + 1``: doubling from 2 s, at most ``max_delay``,
    shortened by up to half at random so that many waiting pings do not retry together."""
    delay = min(max_delay, FIRST_RETRY * 2.0 ** min(attempt - 1, 30))
    return delay * (0.5 + 0.5 * rand())


def _lease(settings: MonitorDelivery) -> float:
    # Longer than any one attempt: a request's connect and read each get ``timeout``.
    return 3 * settings.timeout.total_seconds() + 5


def _horizon(settings: MonitorDelivery) -> Horizon:
    return Horizon(
        retry=settings.max_delay.total_seconds() + CLOCK_SLACK,
        lease=_lease(settings) + CLOCK_SLACK,
    )


class Outbox:
    """Stores pings and delivers them on threads of its own; ``start``/``stop`` own them."""

    def __init__(
        self,
        state_dir: Path,
        settings: Callable[[], MonitorDelivery],
        *,
        sender: Callable[[Request, float], Sent] = send,
        clock: Callable[[], float] = time.time,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.store = PingStore(state_dir, clock)
        self.path = self.store.path
        self._settings = settings
        self._send = sender
        self._poll = poll
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = False
        self._inflight: set[int] = set()
        self._mine: set[int] = set()
        self._work: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._problem: str | None = None

    def open(self) -> Outbox:
        """Open the store; raises sqlite3.Error or OSError when it cannot be used at all."""
        self.store.open()
        return self

    def put(self, ping: Ping) -> bool:
        """Store a ping for delivery; False when its key was put before (nothing to do)."""
        row_id = self.store.put(ping)
        if row_id is None:
            return False
        logger.debug("%s: queued", ping.label)
        with self._wake:
            self._mine.add(row_id)
            self._woken = True
            self._wake.notify_all()
        return True

    def waiting(self) -> int:
        """How many pings wait for delivery (of every process)."""
        return self.store.waiting()

    # the threads

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._loop, name="monitors-outbox", daemon=True)]
        self._threads += [
            threading.Thread(target=self._worker, name=f"monitors-send-{n}", daemon=True)
            for n in range(WORKERS)
        ]
        for thread in self._threads:
            thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until every ping this process put was delivered or dropped; False if not all
        were within ``timeout`` (they stay in the store for the next process to deliver)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._wake:
                mine = list(self._mine)
                # Being sent here: done only once its worker has also logged how it went.
                sending = bool(self._inflight.intersection(mine))
            try:
                if not mine or not (sending or self.store.waiting(mine)):
                    return True
            except sqlite3.Error:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._wake:
                self._wake.wait(min(remaining, 0.25))

    def stop(self, timeout: float = 0.0) -> None:
        """Stop delivering; pings being sent get up to ``timeout`` to finish."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        loop = self._threads[0] if self._threads else None
        if loop is not None:
            loop.join(1.0)
        for _ in range(WORKERS):
            self._work.put(None)
        with self._wake:
            while self._inflight and time.monotonic() < deadline:
                self._wake.wait(max(0.0, deadline - time.monotonic()))
            idle = not self._inflight
        if idle and (loop is None or not loop.is_alive()):
            self.store.close()

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                free = WORKERS - len(self._inflight)
            wait = self._poll
            try:
                wait = self._round(free)
                self._problem = None
            except sqlite3.Error as exc:
                if self._problem != str(exc):
                    self._problem = str(exc)
                    logger.warning("the monitors' outbox cannot be read (%s); trying again", exc)
            with self._wake:
                if not self._woken and not self._stopping:
                    self._wake.wait(wait)
                self._woken = False

    def _round(self, free: int) -> float:
        """Drop what is too old, hand out what is due; the seconds until more is due."""
        settings = self._settings()
        for old in self.store.expire(settings.max_age.total_seconds()):
            logger.warning(
                "%s was dropped: not delivered within %s (%d attempts; last: %s)",
                old.label,
                format_duration(settings.max_age),
                old.attempts,
                old.last_error or "none",
            )
            with self._wake:
                self._mine.discard(old.id)
        if free > 0:
            for claimed in self.store.claim(free, _lease(settings), _horizon(settings)):
                with self._wake:
                    self._inflight.add(claimed.id)
                self._work.put(claimed)
        due = self.store.next_due(_horizon(settings))
        return self._poll if due is None else max(min(due, self._poll), 0.01)

    def _worker(self) -> None:
        while True:
            claimed = self._work.get()
            if claimed is None:
                return
            try:
                self._deliver(claimed)
            except Exception:  # a broken ping must not stop the others
                logger.exception("%s: delivery failed", claimed.label)
            finally:
                with self._wake:
                    self._inflight.discard(claimed.id)
                    self._woken = True
                    self._wake.notify_all()

    def _deliver(self, claimed: Claimed) -> None:
        settings = self._settings()
        sent = self._send(claimed.request, settings.timeout.total_seconds())
        attempts = claimed.attempts + 1
        if sent.delivered or not sent.retry:
            done = "delivered" if sent.delivered else "refused"
            self.store.finish(claimed.id, done, sent.problem)
            if not sent.delivered:
                logger.warning(
                    "%s was refused: %s; dropped it (check the monitor's URL)",
                    claimed.label,
                    sent.problem,
                )
            elif attempts > 1:
                logger.info("%s delivered after %d attempts", claimed.label, attempts)
            else:
                logger.debug("%s delivered", claimed.label)
            with self._wake:
                self._mine.discard(claimed.id)  # said and done: flush may return
            return
        delay = backoff(attempts, settings.max_delay.total_seconds())
        self.store.retry(claimed.id, attempts, delay, sent.problem)
        if attempts == 1:
            logger.warning(
                "%s could not be delivered: %s; trying again for up to %s",
                claimed.label,
                sent.problem,
                format_duration(settings.max_age),
            )
        else:
            logger.debug("%s: attempt %d failed: %s", claimed.label, attempts, sent.problem)
