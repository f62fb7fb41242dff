"""Run history in SQLite: one row per run, each job's last state, and what was published."""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mqtt_backup.errors import MqttBackupError
from mqtt_backup.jobs.state import JobState, iso
from mqtt_backup.sinks import Sink
from mqtt_backup.sqlite_files import move_aside

if TYPE_CHECKING:
    from mqtt_backup.config.models import HistoryRetention

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    bytes_transferred INTEGER NOT NULL DEFAULT 0,
    files_transferred INTEGER NOT NULL DEFAULT 0,
    files_verified INTEGER NOT NULL DEFAULT 0,
    files_deleted INTEGER NOT NULL DEFAULT 0,
    bytes_deleted INTEGER NOT NULL DEFAULT 0,
    files_kept INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    kept TEXT,
    hooks TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job_id, started_at);
CREATE TABLE IF NOT EXISTS job_states (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS published (
    job_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    PRIMARY KEY (job_id, topic)
);
CREATE TABLE IF NOT EXISTS settings (
    job_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
-- The rclone processes of runs still going (a run may have two at once), so that a start-up
-- after a crash can stop those left running. started: field 22 of /proc/<pid>/stat.
CREATE TABLE IF NOT EXISTS run_processes (
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started INTEGER NOT NULL,
    PRIMARY KEY (run_id, pid, started)
);
"""


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns that later versions keep to a history an older version created."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for column in ("kept", "hooks"):
        if column not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")


class _Corrupt(sqlite3.DatabaseError):
    """quick_check found damage that no statement has tripped over yet."""


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Damage to the file, as opposed to a busy, locked, read-only or missing database."""
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _moment(row: tuple[object, ...] | None, job_id: str) -> datetime | None:
    """A time read from the runs table; a damaged value is reported and taken as unknown."""
    if not row or not row[0]:
        return None
    try:
        return datetime.fromisoformat(str(row[0]))
    except ValueError:
        logger.warning("the history holds a run time of job %s that is not a time", job_id)
        return None


def _ms(moment: datetime | None) -> str | None:
    # Milliseconds, so that runs seconds apart can be ordered and compared for overlap.
    return iso(moment, "milliseconds")


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    job_id: str
    trigger: str
    attempt: int
    started_at: str
    finished_at: str | None
    status: str
    bytes_transferred: int
    files_transferred: int
    files_verified: int
    files_deleted: int
    bytes_deleted: int
    files_kept: int
    error: str | None
    dry_run: bool
    kept: str | None = None
    # JSON: the run's hooks, each as engine/hooks.py's HookResult.record() wrote it.
    hooks: str | None = None

    def hook_records(self) -> list[dict[str, object]]:
        """The run's hooks in the order they ran: kind, program, ending, masked output, …"""
        try:
            found = json.loads(self.hooks) if self.hooks else []
        except ValueError:
            return []
        if not isinstance(found, list):
            return []
        return [hook for hook in found if isinstance(hook, dict)]

    def kept_reasons(self) -> dict[str, dict[str, object]]:
        """Kept files by reason: ``{"differs": {"count": 1, "files": ["a.jpg"]}}``."""
        try:
            found = json.loads(self.kept) if self.kept else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


_COLUMNS = ", ".join(RunRecord.__dataclass_fields__)


def _record(row: tuple[Any, ...]) -> RunRecord:
    # A row's values are untyped to a type checker; the columns are RunRecord's fields.
    values = list(row)
    values[14] = bool(values[14])  # dry_run
    return RunRecord(*values)


class History:
    """Thread-safe access to ``state_dir/history.sqlite3``; several processes may share it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "history.sqlite3"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> History:
        """Open (and create) the database; a corrupt one is moved aside and started afresh.

        Raises MqttBackupError when state_dir or the database cannot be used at all.
        """
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MqttBackupError(
                    f"cannot create state_dir {self.path.parent}: {exc.strerror}"
                ) from None
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                if not _is_corrupt(exc):
                    raise MqttBackupError(f"cannot open the history {self.path}: {exc}") from None
                self._db = self._replace_corrupt(exc)
        return self

    def _connect(self) -> sqlite3.Connection:
        """A connection whose schema is in place and whose file passed SQLite's quick_check."""
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            _migrate(db)
            # Reads every page but checks no index content: a few ms for a year of runs,
            # and a damaged file found now costs nothing, while found mid-run it costs the run.
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise _Corrupt(str(verdict[0] if verdict else "quick_check gave no answer"))
        except BaseException:
            db.close()
            raise
        return db

    def _replace_corrupt(self, problem: sqlite3.DatabaseError) -> sqlite3.Connection:
        # Under an OS lock, and only if the file is still corrupt: another process may have
        # replaced it a moment ago, and its fresh database must not be moved aside too.
        lock_path = self.path.with_name(f"{self.path.name}.repair-lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._connect()
            except sqlite3.DatabaseError as again:
                if not _is_corrupt(again):
                    raise MqttBackupError(
                        f"cannot open the history {self.path}: {again}"
                    ) from None
            aside = move_aside(self.path)
            logger.error(
                "the history %s is corrupt (%s): moved it to %s and started a new, empty "
                "history; past runs are in the moved file",
                self.path,
                problem,
                aside.name,
            )
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                raise MqttBackupError(f"cannot create the history {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> History:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.open()._db
        if db is None:
            raise RuntimeError("history is closed")
        with self._lock, db:
            yield db

    # runs

    def start_run(self, state: JobState, attempt: int = 1, dry_run: bool = False) -> None:
        """Record a run that has begun, together with the job's running state."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, job_id, trigger, attempt, started_at, status, dry_run)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    state.run_id,
                    state.job_id,
                    state.trigger,
                    attempt,
                    _ms(state.started_at),
                    state.status,
                    int(dry_run),
                ),
            )
            self._save_state(db, state)

    def finish_run(
        self,
        state: JobState,
        kept_files: dict[str, list[str]] | None = None,
        hooks: list[dict[str, object]] | None = None,
    ) -> None:
        """Record the terminal state of a run and make it the job's last state.

        ``kept_files`` names the first few source files kept for each reason; ``hooks`` holds
        each hook that ran, its output already masked.
        """
        d = state.deletion
        kept = {
            reason: {"count": count, "files": (kept_files or {}).get(reason, [])}
            for reason, count in d.kept.items()
        }
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at=?, status=?, bytes_transferred=?,"
                " files_transferred=?, files_verified=?, files_deleted=?, bytes_deleted=?,"
                " files_kept=?, error=?, kept=?, hooks=? WHERE run_id=?",
                (
                    _ms(state.finished_at),
                    state.status,
                    state.bytes_transferred,
                    state.files_transferred,
                    d.files_verified,
                    d.files_deleted,
                    d.bytes_deleted,
                    d.files_kept,
                    state.error,
                    json.dumps(kept) if kept else None,
                    json.dumps(hooks) if hooks else None,
                    state.run_id,
                ),
            )
            db.execute("DELETE FROM run_processes WHERE run_id=?", (state.run_id,))
            self._save_state(db, state)

    def runs(self, job_id: str, limit: int = 50) -> list[RunRecord]:
        """The job's most recent runs, newest first."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs"  # noqa: S608 - fixed names
                " WHERE job_id=? ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (job_id, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def running_runs(self) -> list[RunRecord]:
        """Runs recorded as running: their process may have died (docs/design.md, guarantee 2)."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs"  # noqa: S608 - fixed names
                " WHERE status IN ('running', 'queued') ORDER BY started_at",
            ).fetchall()
        return [_record(row) for row in rows]

    def add_process(self, run_id: str, pid: int, started: int) -> None:
        """Record an rclone process of a running run (forgotten when the run finishes)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO run_processes (run_id, pid, started) VALUES (?, ?, ?)",
                (run_id, pid, started),
            )

    def processes(self, run_id: str) -> list[tuple[int, int]]:
        """The (pid, start time) of each rclone process recorded for an unfinished run."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT pid, started FROM run_processes WHERE run_id=? ORDER BY rowid", (run_id,)
            ).fetchall()
        return [(int(pid), int(started)) for pid, started in rows]

    def last_started(self, job_id: str, before: datetime | None = None) -> datetime | None:
        """The latest start of the job, or the latest not after ``before``."""
        with self._tx() as db:
            row = db.execute(
                # A dry run backed nothing up: it must not hold back a due or missed run.
                "SELECT MAX(started_at) FROM runs WHERE job_id=? AND dry_run=0"
                " AND (? IS NULL OR started_at<=?)",
                (job_id, _ms(before), _ms(before)),
            ).fetchone()
        return _moment(row, job_id)

    # last states

    def save_state(self, state: JobState) -> None:
        with self._tx() as db:
            self._save_state(db, state)

    @staticmethod
    def _save_state(db: sqlite3.Connection, state: JobState) -> None:
        db.execute(
            "INSERT INTO job_states (job_id, state) VALUES (?, ?)"
            " ON CONFLICT(job_id) DO UPDATE SET state=excluded.state",
            (state.job_id, state.to_json()),
        )

    def last_states(self) -> dict[str, JobState]:
        """Each job's saved state; one that no longer parses is skipped with a warning."""
        with self._tx() as db:
            rows = db.execute("SELECT job_id, state FROM job_states").fetchall()
        states: dict[str, JobState] = {}
        for job_id, text in rows:
            try:
                states[job_id] = JobState.from_json(text)
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
                # Not the error's text: it would quote the row, whatever it holds.
                logger.warning(
                    "the history's saved state of job %s cannot be read; it starts afresh",
                    job_id,
                )
        return states

    # what was published, so a removed job's retained topics can be cleared after a restart

    def record_published(self, job_id: str, topics: set[str] | list[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO published (job_id, topic) VALUES (?, ?)",
                [(job_id, topic) for topic in topics],
            )

    def published_topics(self) -> dict[str, set[str]]:
        with self._tx() as db:
            rows = db.execute("SELECT job_id, topic FROM published").fetchall()
        out: dict[str, set[str]] = {}
        for job_id, topic in rows:
            out.setdefault(job_id, set()).add(topic)
        return out

    def forget_published(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM published WHERE job_id=?", (job_id,))

    # per-job settings changed at run time (the schedule switch)

    def set_setting(self, job_id: str, key: str, value: object) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO settings (job_id, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT(job_id, key) DO UPDATE SET value=excluded.value",
                (job_id, key, json.dumps(value)),
            )

    def setting(self, job_id: str, key: str, default: object = None) -> object:
        with self._tx() as db:
            row = db.execute(
                "SELECT value FROM settings WHERE job_id=? AND key=?", (job_id, key)
            ).fetchone()
        if not row:
            return default
        try:
            return json.loads(row[0])
        except (ValueError, TypeError):
            logger.warning(
                "the history's setting %s of job %s cannot be read; using %r", key, job_id, default
            )
            return default

    # retention

    def prune(
        self,
        *,
        max_age: timedelta | None,
        max_runs: int | None,
        now: datetime,
        job_id: str | None = None,
    ) -> int:
        """Remove finished runs older than ``max_age`` or beyond a job's newest ``max_runs``.

        Whatever the bounds, each job keeps its newest run, its newest real success (the
        "last success" shown to users) and every run not yet finished (recovery needs them).
        Returns how many runs were removed; ``job_id`` limits the pruning to one job.
        """
        if max_age is None and max_runs is None:
            return 0
        cutoff = _ms(now - max_age) if max_age is not None else None
        with self._tx() as db:
            cursor = db.execute(_PRUNE, (job_id, job_id, max_runs, max_runs, cutoff, cutoff))
            return cursor.rowcount


# Ranks each job's runs from the newest (1); "success" ranks real successes among themselves.
# The freed pages are reused by later runs, so the file stops growing once the bounds bite.
_PRUNE = """
DELETE FROM runs WHERE rowid IN (
    SELECT id FROM (
        SELECT rowid AS id, status, started_at,
            ROW_NUMBER() OVER (
                PARTITION BY job_id ORDER BY started_at DESC, rowid DESC
            ) AS newest,
            ROW_NUMBER() OVER (
                PARTITION BY job_id, status = 'completed' AND dry_run = 0
                ORDER BY started_at DESC, rowid DESC
            ) AS success,
            status = 'completed' AND dry_run = 0 AS real_success
        FROM runs WHERE ? IS NULL OR job_id = ?
    )
    WHERE newest > 1
        AND status NOT IN ('running', 'queued')
        AND NOT (real_success AND success = 1)
        AND ((? IS NOT NULL AND newest > ?) OR (? IS NOT NULL AND started_at < ?))
)
"""


class HistoryPruner(Sink):
    """Keeps the history within ``history_retention``: every job at start, a job after its runs.

    A sink of the executor; ``retention`` is asked on each use, so a reloaded
    configuration's bounds apply from the next run on.
    """

    name = "history-pruner"

    def __init__(self, history: History, retention: Callable[[], HistoryRetention]) -> None:
        self._history = history
        self._retention = retention

    def prune_all(self) -> int:
        return self._prune(None)

    def state_changed(self, state: JobState) -> None:
        pass

    def run_finished(self, state: JobState) -> None:
        self._prune(state.job_id)

    def _prune(self, job_id: str | None) -> int:
        retention = self._retention()
        return self._history.prune(
            max_age=retention.max_age,
            max_runs=retention.max_runs,
            now=datetime.now(UTC),
            job_id=job_id,
        )
