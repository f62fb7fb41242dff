"""The outbox's file: pings in SQLite (``state_dir/outbox.sqlite3``), shared by processes.

Pure storage, no threads and no network: outbox.py decides when to send and what to log.

- A ping is stored under a key (receiver, run, ending); storing a key again does nothing,
  and a finished ping stays as a tombstone, without URL, headers or body, for ``max_age``.
- Pings of one queue (one receiver) are handed out one at a time, oldest first: only the
  head of a queue can be claimed.
- A claim takes a lease inside one IMMEDIATE transaction, so of several processes one sends
  a ping; a process that dies while sending leaves the lease to run out.
- Times are the wall clock, read under the write lock, and may be set back: a retry time
  or a lease further ahead than it can be is taken as due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mqtt_backup.sinks.monitors import OUTBOX_FILE
from mqtt_backup.sinks.monitors.report import Request
from mqtt_backup.sqlite_files import move_aside

logger = logging.getLogger(__name__)

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
_FORGET = "url = '', headers = '[]', body = NULL, lease_until = 0"


@dataclass(frozen=True, slots=True)
class Ping:
    """A request to deliver once. ``label`` names it in log lines, never by its URL."""

    queue: str
    key: str
    label: str
    request: Request


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    label: str
    attempts: int
    request: Request


@dataclass(frozen=True, slots=True)
class Expired:
    id: int
    label: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Horizon:
    """How far ahead a retry time and a lease can be; further, the clock was set back."""

    retry: float
    lease: float


class _Damaged(sqlite3.DatabaseError):
    """quick_check found damage that no statement has tripped over yet."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file, as opposed to a busy, locked, read-only or missing one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, _Damaged) or (
        code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    )


class PingStore:
    """Thread-safe access to the outbox file; several processes may share it."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / OUTBOX_FILE
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> PingStore:
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

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

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
        aside = move_aside(self.path)
        logger.error(
            "the monitors' outbox %s is damaged (%s): moved it to %s; pings waiting in it "
            "will not be sent",
            self.path,
            problem,
            aside.name,
        )

    @contextlib.contextmanager
    def _sql(self, write: bool = False) -> Iterator[tuple[sqlite3.Connection, float]]:
        """The connection for this thread alone, and the time; ``write`` holds the file's
        write lock, and the time is read under it (one read before could be older than a
        lease another process just took, which would then look far ahead)."""
        with self._lock:
            db = self._db
            if db is None:
                raise sqlite3.ProgrammingError("the outbox is closed")
            if not write:
                yield db, self._clock()
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db, self._clock()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def put(self, ping: Ping) -> int | None:
        """Store a ping; its row id, or None when its key was stored before."""
        request = ping.request
        with self._sql(write=True) as (db, now):
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
            return cursor.lastrowid if cursor.rowcount == 1 else None

    def claim(self, limit: int, lease: float, horizon: Horizon) -> list[Claimed]:
        """Up to ``limit`` queue heads that are due, leased for ``lease`` seconds."""
        with self._sql(write=True) as (db, now):
            rows = db.execute(
                f"SELECT id, label, attempts, method, url, headers, body FROM pings "  # noqa: S608 - constant
                f"WHERE id IN ({_HEADS}) "
                "AND (next_at <= :now OR next_at > :now + :far_retry) "
                "AND (lease_until <= :now OR lease_until > :now + :far_lease) "
                "ORDER BY id LIMIT :limit",
                {
                    "now": now,
                    "limit": limit,
                    "far_retry": horizon.retry,
                    "far_lease": horizon.lease,
                },
            ).fetchall()
            db.executemany(
                "UPDATE pings SET lease_until = ? WHERE id = ?", [(now + lease, r[0]) for r in rows]
            )
        return [
            Claimed(row_id, label, attempts, Request(method, url, _headers(headers), body))
            for row_id, label, attempts, method, url, headers, body in rows
        ]

    def retry(self, row_id: int, attempts: int, delay: float, problem: str | None) -> None:
        """An attempt failed: the ping is due again in ``delay`` seconds."""
        with self._sql(write=True) as (db, now):
            db.execute(
                "UPDATE pings SET attempts = ?, next_at = ?, lease_until = 0, last_error = ? "
                "WHERE id = ?",
                (attempts, now + delay, problem, row_id),
            )

    def finish(self, row_id: int, done: str, problem: str | None = None) -> None:
        """Delivered or refused: only the key is kept, so the ping is never sent again."""
        with self._sql(write=True) as (db, now):
            db.execute(
                f"UPDATE pings SET done = ?, done_at = ?, last_error = ?, {_FORGET} WHERE id = ?",  # noqa: S608 - constant
                (done, now, problem, row_id),
            )

    def expire(self, max_age: float) -> list[Expired]:
        """Drop waiting pings older than ``max_age``, and tombstones older than that."""
        with self._sql(write=True) as (db, now):
            old = [
                Expired(*row)
                for row in db.execute(
                    "SELECT id, label, attempts, last_error FROM pings WHERE done_at IS NULL "
                    "AND created_at < ? AND lease_until <= ?",
                    (now - max_age, now),
                )
            ]
            db.executemany(
                f"UPDATE pings SET done = 'expired', done_at = ?, {_FORGET} WHERE id = ?",  # noqa: S608 - constant
                [(now, ping.id) for ping in old],
            )
            db.execute("DELETE FROM pings WHERE done_at < ?", (now - max_age,))
        return old

    def next_due(self, horizon: Horizon) -> float | None:
        """Seconds until a queue head is due (0: now), None when nothing waits."""
        with self._sql() as (db, now):
            heads = db.execute(
                f"SELECT next_at, lease_until FROM pings WHERE id IN ({_HEADS})"  # noqa: S608 - constant
            ).fetchall()
        found: float | None = None
        for next_at, lease_until in heads:
            due = next_at if next_at <= now + horizon.retry else now
            if now < lease_until <= now + horizon.lease:
                due = max(due, lease_until)
            found = due - now if found is None else min(found, due - now)
        return None if found is None else max(found, 0.0)

    def waiting(self, ids: list[int] | None = None) -> int:
        """How many pings wait for delivery: all, or those of ``ids``."""
        query = "SELECT COUNT(*) FROM pings WHERE done_at IS NULL"
        if ids is not None:
            query += f" AND id IN ({','.join('?' * len(ids))})"
        with self._sql() as (db, _now):
            return int(db.execute(query, ids or ()).fetchone()[0])


def _headers(text: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = json.loads(text)
    except ValueError:
        return ()
    return tuple((str(name), str(value)) for name, value in pairs)
