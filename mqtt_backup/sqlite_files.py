"""What the SQLite files of ``state_dir`` (history, monitors' outbox) share."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path


def move_aside(path: Path) -> Path:
    """Rename a damaged database out of the way, with its WAL and shared memory; the new name.

    The WAL and shared memory belong to the old file: left in place, SQLite would apply the
    old file's pages to a new one.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    return aside
