"""The promise of verify-then-delete, checked on disk after a run.

Every source file that is gone after the run has an identical copy (the same bytes) at
the destination, and that copy is not in the source: the destination is not the source
under another name, nor a folder inside it, and a destination holding the source does
not count a source file as another's copy. The run also changes no byte of a source
file it keeps and deletes nothing at the destination.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def snapshot(root: Path | str) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path, with its bytes; symlinks below
    ``root`` are not followed (rclone skips them too)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    files: dict[str, bytes] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def within(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both already resolved)."""
    path, folder = str(path), str(folder).rstrip("/")
    return path == folder or path.startswith(folder + "/")


@dataclass
class Violations:
    """What a run did that it must never do, one sentence per file."""

    deleted_from_same_storage: list[str] = field(default_factory=list)
    deleted_without_copy: list[str] = field(default_factory=list)
    changed_in_source: list[str] = field(default_factory=list)
    deleted_at_destination: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [
            *self.deleted_from_same_storage,
            *self.deleted_without_copy,
            *self.changed_in_source,
            *self.deleted_at_destination,
        ]


def check(
    *,
    known: Mapping[str, bytes],
    source_after: Mapping[str, bytes],
    destination_after: Mapping[str, bytes],
    destination_before: Mapping[str, bytes],
    source_real: Path | str,
    destination_real: Path | str,
) -> Violations:
    """Compare the files after a run with what they held before it.

    ``known`` holds each source file's last content before the run ended (the snapshot
    taken before it, plus what the test itself wrote while it ran); ``destination_before``
    the destination's files before the run that are not source files and that the test
    did not remove.
    """
    found = Violations()
    for path, content in sorted(known.items()):
        if path in source_after:
            if source_after[path] != content:
                found.changed_in_source.append(
                    f"{path!r} is still in the source but its bytes changed "
                    f"({len(content)} bytes before, {len(source_after[path])} after)"
                )
            continue
        # Where the copy really is: a destination that is the source, lies inside it or
        # holds it can put a file's "copy" in the source itself.
        copy = os.path.realpath(Path(destination_real, path))
        if within(copy, source_real):
            found.deleted_from_same_storage.append(
                f"{path!r} was deleted, but its copy at the destination "
                f"{str(destination_real)!r} is {copy!r}, in the source "
                f"{str(source_real)!r}: no copy is elsewhere"
            )
        elif path not in destination_after:
            found.deleted_without_copy.append(
                f"{path!r} was deleted from the source and is not at the destination"
            )
        elif destination_after[path] != content:
            found.deleted_without_copy.append(
                f"{path!r} was deleted from the source, but the destination holds other "
                f"bytes ({len(content)} in the source, {len(destination_after[path])} there)"
            )
    for path in sorted(set(destination_before) - set(destination_after)):
        found.deleted_at_destination.append(f"{path!r} was deleted from the destination")
    return found
