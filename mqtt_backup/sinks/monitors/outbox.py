"""The outbox: every ping waits in ``state_dir/outbox.sqlite3`` until its receiver took it.

- ``put`` stores a ping (a sink's thread, a few ms) and wakes the delivery thread; nothing
  that puts ever waits for the network.
- The delivery thread hands the oldest waiting ping of each queue (one queue per monitor
  URL) to a few worker threads, so a slow receiver holds up only its own pings, and the
  pings of one queue go out in the order they were put: a start never lands after its
  run's fail.
- A ping that could not be delivered is tried again after an exponential back-off with
  jitter (2 s, 4 s, … up to ``max_delay``) until it is delivered, refused (HTTP 4xx other
  than 408, 425 and 429: trying again cannot help), or older than ``max_age``. Each of those
  ends is logged; of the failures only the first of each ping.
- Several processes (``serve`` and a ``run-job`` from cron) share the file. A ping is
  claimed with a lease inside one IMMEDIATE transaction, so one process sends it. One that
  dies while sending leaves its lease to expire, and the ping is sent again: at least once.
- Each ping has a key (queue, run, ending); putting a key again is ignored, and a finished
  ping stays as a tombstone, without URL or body, for ``max_age``: in the normal case every
  ping is delivered exactly once.
- Times are the wall clock, which may be set back: a retry time or a lease further ahead
  than it can be is taken as due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mqtt_backup.config.durations import format_duration
from mqtt_backup.config.monitors import MonitorDelivery
from mqtt_backup.sinks.monitors import OUTBOX_FILE
from mqtt_backup.sinks.monitors.http import Sent, send
from mqtt_backup.sinks.monitors.report import Request

logger = logging.getLogger(__name__)

WORKERS = 4
FIRST_RETRY = 2.0
# How often waiting pings are looked at when nothing wakes the thread: pings another
# process put and left behind, and leases that ran out.
POLL_SECONDS = 10.0
# A retry time or lease further ahead than it can be by this much means the clock went back.
CLOCK_SLACK = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    label TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    -- delivered, refused or expired; the row then stays only to keep its key used
    done TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS pings_waiting ON pings (queue, id) WHERE done_at IS NULL;
CREATE INDEX IF NOT EXISTS pings_done ON pings (done_at) WHERE done_at IS NOT NULL;
"""
_HEADS = "SELECT MIN(id) FROM pings WHERE done_at IS NULL GROUP BY queue"


class _Damaged(sqlite3.DatabaseError):
    """quick_check found damage that no statement has tripped over yet."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file, as opposed to a busy, locked, read-only or missing one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, _Damaged) or (
        code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    )


@dataclass(frozen=True, slots=True)
class Ping:
    """A request to deliver once. ``label`` names it in log lines, never by its URL."""

    queue: str
    key: str
    label: str
    request: Request


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    label: str
    attempts: int
    request: Request


def backoff(attempt: int, max_delay: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempt + 1``: doubling from 2 s, at most ``max_delay``,
    shortened by up to half at random so that many waiting pings do not retry together."""
    delay = min(max_delay, FIRST_RETRY * 2 ** min(attempt - 1, 30))
    return delay * (0.5 + 0.5 * rand())


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
        self.path = Path(state_dir) / OUTBOX_FILE
        self._settings = settings
        self._send = sender
        self._clock = clock
        self._poll = poll
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = False
        self._inflight: set[int] = set()
        self._mine: set[int] = set()
        self._work: queue.SimpleQueue[_Claimed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._db_problem: str | None = None

    # the file

    def open(self) -> Outbox:
        """Open (and create) the file; a damaged one is moved aside, its pings lost.

        Raises sqlite3.Error or OSError when the file cannot be used at all.
        """
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # It holds the monitors' URLs, tokens and all: readable by its owner only.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                self._move_aside(exc)
                self._db = self._connect()
        return self

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise _Damaged(str(verdict[0] if verdict else "quick_check gave no answer"))
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, problem: Exception) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        logger.error(
            "the monitors' outbox %s is damaged (%s): moved it to %s; pings waiting in it "
            "will not be sent",
            self.path,
            problem,
            aside.name,
        )

    @contextlib.contextmanager
    def _sql(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; ``write`` holds the file's write lock."""
        with self._db_lock:
            db = self._db
            if db is None:
                raise sqlite3.ProgrammingError("the outbox is closed")
            if not write:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # putting

    def put(self, ping: Ping) -> bool:
        """Store a ping for delivery; False when its key was put before (nothing to do)."""
        now = self._clock()
        request = ping.request
        with self._sql(write=True) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO pings (key, queue, label, method, url, headers, body, "
                "created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ping.key,
                    ping.queue,
                    ping.label,
                    request.method,
                    request.url,
                    json.dumps(request.headers),
                    request.body,
                    now,
                    now,
                ),
            )
            added = cursor.rowcount == 1
            row_id = cursor.lastrowid
        if not added:
            return False
        logger.debug("%s: queued", ping.label)
        with self._wake:
            if row_id is not None:
                self._mine.add(row_id)
            self._woken = True
            self._wake.notify_all()
        return True

    def waiting(self) -> int:
        """How many pings wait for delivery (of every process)."""
        with self._sql() as db:
            return int(db.execute("SELECT COUNT(*) FROM pings WHERE done_at IS NULL").fetchone()[0])

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
        were within ``timeout`` (they stay in the file for the next process to deliver)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._wake:
                mine = list(self._mine)
            if not mine or not self._undone(mine):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._wake:
                self._wake.wait(min(remaining, 0.25))

    def _undone(self, ids: list[int]) -> bool:
        marks = ",".join("?" * len(ids))
        try:
            with self._sql() as db:
                found = db.execute(
                    f"SELECT COUNT(*) FROM pings WHERE done_at IS NULL AND id IN ({marks})",  # noqa: S608 - only "?" marks
                    ids,
                ).fetchone()
        except sqlite3.Error:
            return True
        return bool(found[0])

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
            with self._db_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                free = WORKERS - len(self._inflight)
            wait = self._poll
            try:
                settings = self._settings()
                self._expire(settings)
                if free > 0:
                    for claimed in self._claim(free, settings):
                        with self._wake:
                            self._inflight.add(claimed.id)
                        self._work.put(claimed)
                wait = self._next_wait(settings)
                self._db_problem = None
            except sqlite3.Error as exc:
                if self._db_problem != str(exc):
                    self._db_problem = str(exc)
                    logger.warning("the monitors' outbox cannot be read (%s); trying again", exc)
            with self._wake:
                if not self._woken and not self._stopping:
                    self._wake.wait(wait)
                self._woken = False

    def _claim(self, limit: int, settings: MonitorDelivery) -> list[_Claimed]:
        lease = self._lease(settings)
        with self._sql(write=True) as db:
            # The time is read under the write lock: one read before it could be older than
            # the lease another process just took, which would then look far ahead.
            now = self._clock()
            rows = db.execute(
                f"SELECT id, label, attempts, method, url, headers, body FROM pings "  # noqa: S608 - constant
                f"WHERE id IN ({_HEADS}) "
                "AND (next_at <= :now OR next_at > :now + :far_retry) "
                "AND (lease_until <= :now OR lease_until > :now + :far_lease) "
                "ORDER BY id LIMIT :limit",
                {"now": now, "limit": limit, **self._far(settings)},
            ).fetchall()
            db.executemany(
                "UPDATE pings SET lease_until = ? WHERE id = ?", [(now + lease, r[0]) for r in rows]
            )
        return [
            _Claimed(row_id, label, attempts, Request(method, url, _headers(headers), body))
            for row_id, label, attempts, method, url, headers, body in rows
        ]

    def _far(self, settings: MonitorDelivery) -> dict[str, float]:
        """How far ahead a retry time or a lease can be; beyond, the clock was set back."""
        return {
            "far_retry": settings.max_delay.total_seconds() + CLOCK_SLACK,
            "far_lease": self._lease(settings) + CLOCK_SLACK,
        }

    @staticmethod
    def _lease(settings: MonitorDelivery) -> float:
        # Longer than any one attempt: a request's connect and read each get ``timeout``.
        return 3 * settings.timeout.total_seconds() + 5

    def _next_wait(self, settings: MonitorDelivery) -> float:
        """Seconds until the next queue head is due (at most the poll interval)."""
        now = self._clock()
        far = self._far(settings)
        with self._sql() as db:
            heads = db.execute(
                f"SELECT next_at, lease_until FROM pings WHERE id IN ({_HEADS})"  # noqa: S608 - constant
            ).fetchall()
        wait = self._poll
        for next_at, lease_until in heads:
            due = next_at if next_at <= now + far["far_retry"] else now
            if now < lease_until <= now + far["far_lease"]:
                due = max(due, lease_until)
            wait = min(wait, due - now)
        return max(wait, 0.01)

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

    def _deliver(self, claimed: _Claimed) -> None:
        settings = self._settings()
        timeout = settings.timeout.total_seconds()
        sent = self._send(claimed.request, timeout)
        now = self._clock()
        attempts = claimed.attempts + 1
        if sent.delivered or not sent.retry:
            done = "delivered" if sent.delivered else "refused"
            self._finish(claimed.id, done, now, sent.problem)
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
            return
        delay = backoff(attempts, settings.max_delay.total_seconds())
        with self._sql(write=True) as db:
            db.execute(
                "UPDATE pings SET attempts = ?, next_at = ?, lease_until = 0, last_error = ? "
                "WHERE id = ?",
                (attempts, now + delay, sent.problem, claimed.id),
            )
        if attempts == 1:
            logger.warning(
                "%s could not be delivered: %s; trying again for up to %s",
                claimed.label,
                sent.problem,
                format_duration(settings.max_age),
            )
        else:
            logger.debug("%s: attempt %d failed: %s", claimed.label, attempts, sent.problem)

    def _finish(self, row_id: int, done: str, now: float, problem: str | None) -> None:
        with self._sql(write=True) as db:
            # The URL and body are the secret part; the key alone keeps the ping from
            # being put and sent again.
            db.execute(
                "UPDATE pings SET done = ?, done_at = ?, last_error = ?, url = '', "
                "headers = '[]', body = NULL, lease_until = 0 WHERE id = ?",
                (done, now, problem, row_id),
            )
        with self._wake:
            self._mine.discard(row_id)

    def _expire(self, settings: MonitorDelivery) -> None:
        """Drop pings older than ``max_age`` (logged), and tombstones older than that."""
        max_age = settings.max_age.total_seconds()
        with self._sql(write=True) as db:
            now = self._clock()
            old = db.execute(
                "SELECT id, label, attempts, last_error FROM pings WHERE done_at IS NULL "
                "AND created_at < ? AND lease_until <= ?",
                (now - max_age, now),
            ).fetchall()
            db.executemany(
                "UPDATE pings SET done = 'expired', done_at = ?, url = '', headers = '[]', "
                "body = NULL WHERE id = ?",
                [(now, row[0]) for row in old],
            )
            db.execute("DELETE FROM pings WHERE done_at < ?", (now - max_age,))
        for row_id, label, attempts, last_error in old:
            with self._wake:
                self._mine.discard(row_id)
            logger.warning(
                "%s was dropped: not delivered within %s (%d attempts; last: %s)",
                label,
                format_duration(settings.max_age),
                attempts,
                last_error or "none",
            )


def _headers(text: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = json.loads(text)
    except ValueError:
        return ()
    return tuple((str(name), str(value)) for name, value in pairs)
