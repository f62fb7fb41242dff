"""Faults injected between two rclone calls of a run, by a wrapper around the rclone binary.

Run as ``python faults.py FILE``, where FILE (``<point>.json``) lists the faults due at
one point of the run, as JSON. The wrapper runs this only while FILE exists, and FILE is
removed before its faults are applied, so they strike once: at the first call. Each
fault that could be applied is appended to ``done.jsonl`` beside FILE (one JSON object
per line), so the test knows what happened to the files. Standard library only: it runs
in a bare interpreter (``-I -S``) to keep the start-up short.

A fault is ``{"kind": ..., "path": ...}``:

- ``corrupt``: flip the first byte of the file, keeping its size and modification time.
- ``remove``: delete the file.
- ``unreadable``: make the file unreadable (``chmod 000``). root reads everything, so as
  root the file is replaced by a folder of the same name instead.
- ``root_gone``: move the folder away (``to``), so the destination no longer exists.
- ``root_unreadable``: ``chmod 000`` the folder; as root, move it away (``to``) and put a
  plain file where it was.
- ``append``: append ``APPENDED`` to the file (its size and modification time change).
- ``create``: create the file with ``CREATED`` as its content.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

APPENDED = b"+written while the run went on\n"
CREATED = b"created while the run went on\n"


def _same_times(path: Path, stat: os.stat_result) -> None:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def apply(fault: dict[str, Any]) -> dict[str, Any] | None:
    """Apply one fault; return what was done, or None when there was nothing to do it to."""
    kind, path = fault["kind"], Path(fault["path"])
    root = os.geteuid() == 0
    if kind == "create":
        if path.exists():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CREATED)
        return fault
    if kind in ("root_gone", "root_unreadable"):
        if not path.is_dir():
            return None
        if kind == "root_unreadable" and not root:
            path.chmod(0)
            return {**fault, "chmod": True}
        path.rename(fault["to"])
        if kind == "root_unreadable":
            path.write_bytes(b"not a folder\n")
        return fault
    if not path.is_file():
        return None
    if kind == "corrupt":
        stat = path.stat()
        data = bytearray(path.read_bytes())
        if not data:
            return None  # an empty file cannot differ at the same size
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
        _same_times(path, stat)
    elif kind == "remove":
        path.unlink()
    elif kind == "unreadable":
        if not root:
            path.chmod(0)
            return {**fault, "chmod": True}
        path.unlink()
        path.mkdir()
    elif kind == "append":
        with path.open("ab") as file:
            file.write(APPENDED)
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return fault


def main(path: str) -> None:
    spec = Path(path)
    faults = json.loads(spec.read_text(encoding="utf-8"))
    spec.unlink()
    with (spec.parent / "done.jsonl").open("a", encoding="utf-8") as done:
        for fault in faults:
            applied = apply(fault)
            if applied is not None:
                done.write(json.dumps({**applied, "point": spec.stem}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
