"""Per-job locks in ``state_dir``: OS locks (flock) that die with their process, never stale."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mqtt_backup.errors import JobBusy


class JobLock:
    """An exclusive, non-blocking lock on one job; held by at most one open file in the system."""

    def __init__(self, state_dir: Path, job_id: str) -> None:
        self.job_id = job_id
        self.path = Path(state_dir) / "locks" / f"{job_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> JobLock:
        """Take the lock; raises JobBusy when another run of the job holds it."""
        if self._fd is not None:
            raise JobBusy(f"job {self.job_id!r} is already running in this process")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (process {holder})" if holder else ""
            raise JobBusy(f"job {self.job_id!r} is already running{who}") from None
        # The pid is only informative; the flock itself is what excludes.
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(state_dir: Path, job_id: str) -> bool:
    """Whether some process holds the job's lock right now."""
    lock = JobLock(state_dir, job_id)
    try:
        lock.acquire()
    except JobBusy:
        return True
    lock.release()
    return False


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def is_held(state_dir: Path, job_id: str) -> bool:
    """Whether some process holds the job's lock, for a reader: nothing is created or written.

    A shared lock taken for an instant fails exactly when an exclusive one is held.
    """
    path = Path(state_dir) / "locks" / f"{job_id}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # no run of this job ever took its lock here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock
    return False
