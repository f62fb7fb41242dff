"""No rclone outlives the process that started it.

Two guards. While starting rclone, the child asks the kernel for SIGTERM when its parent
dies (``PR_SET_PDEATHSIG``), which covers ``kill -9`` of mqtt-backup. The kernel sends it
when the *thread* that started the child exits, not the process: every rclone here is
started and waited for by the same thread, so that thread cannot end first. And for
whatever that misses, each run records its rclone's pid and start time, and the start-up
crash recovery stops a process only when both still match: a pid alone may have been
reused by an unrelated process since. Nothing is ever found or killed by name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


@functools.cache
def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this thread ends; None off Linux.

    It runs in the child between fork and exec, where only async-signal-safe work is safe
    with other threads around: it makes one system call and reads the parent's pid. The
    C function is looked up here, in the parent, so the child loads nothing.
    """
    prctl = _load_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            # The parent died between fork and prctl: no signal will come, so never start.
            os._exit(1)

    return preexec


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot; None when it is gone or a zombie.

    Field 22 of /proc/<pid>/stat. The command name (field 2) may hold spaces and
    parentheses, so the fields are counted from the last ``)``.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def stop_leftover(pid: int, started: int, grace: float = 3.0) -> bool:
    """Stop process ``pid`` if it is still the one that started at ``started``.

    Returns True when that process was running (it is gone now, or was sent SIGKILL).
    SIGTERM first, so rclone cleans up, then SIGKILL after ``grace`` seconds.
    """
    fd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        # Held from before the check: the descriptor names that one process, so a pid reused
        # after the check cannot receive the signal.
        fd = os.pidfd_open(pid)
    try:
        if start_time(pid) != started:
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _send(pid, started, fd, sig):
                return True
            if _gone(pid, started, fd, grace):
                return True
        return True
    finally:
        if fd is not None:
            os.close(fd)


def _send(pid: int, started: int, fd: int | None, sig: signal.Signals) -> bool:
    """Signal the process and its group (rclone leads its own); False when it is gone."""
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    # Its group too, as stopping a run does: a wrapper script's rclone is in it. Checked again
    # just before: while the leader lives, no other group can have its number.
    if start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
    return True


def _gone(pid: int, started: int, fd: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` for the process to end; it is not our child, so no waitpid."""
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # A pidfd turns readable when its process exits, child or not.
        return bool(poller.poll(timeout * 1000))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if start_time(pid) != started:
            return True
        time.sleep(0.05)
    return start_time(pid) != started
