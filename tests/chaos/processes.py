"""This test's rclone processes, found in /proc by a marker in their command line."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def rclone_processes(marker: str) -> dict[int, str]:
    """Live rclone clients (not ``rclone serve``) whose command line contains ``marker``.

    The marker is the test's own temp folder, which every rclone call of its jobs names
    (the config file, the source), so other tests and users are never matched. A zombie
    has an empty command line and is not counted: it has ended.
    """
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it ended while we looked
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        if not argv or Path(argv[0]).name != "rclone" or argv[1:2] == ["serve"]:
            continue
        line = " ".join(argv)
        if marker in line:
            found[int(entry.name)] = line
    return found


def survivors(marker: str, grace: float) -> dict[int, str]:
    """The marked rclone processes still alive after ``grace`` seconds (polled, not slept)."""
    deadline = time.monotonic() + grace
    while True:
        alive = rclone_processes(marker)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
