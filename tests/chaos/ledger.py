"""Every version of every file the chaos driver wrote to a source, by its bytes' hash."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str | None:
    try:
        return digest(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        return None


@dataclass
class Ledger:
    """(job, relative path) → the hash of each version written, oldest first."""

    versions: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def write(self, job: str, root: Path, rel: str, data: bytes) -> None:
        """Write ``data`` over ``root/rel`` in place, as an application would, and record it."""
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # Recorded first: from the moment the file is opened its old version may be gone.
        self.versions.setdefault((job, rel), []).append(digest(data))
        with path.open("wb") as out:
            out.write(data)

    def names(self, job: str) -> list[str]:
        return sorted(rel for j, rel in self.versions if j == job)

    def last(self) -> dict[tuple[str, str], str]:
        return {key: hashes[-1] for key, hashes in self.versions.items()}

    def count(self) -> int:
        return sum(len(hashes) for hashes in self.versions.values())


def lost_files(
    ledger: Ledger, source: Callable[[str], Path], destination: Callable[[str], Path]
) -> list[str]:
    """Each file whose last written bytes are neither in its source nor at its destination."""
    lost: list[str] = []
    for (job, rel), wanted in sorted(ledger.last().items()):
        in_source = file_digest(source(job) / rel)
        if in_source == wanted:
            continue
        at_destination = file_digest(destination(job) / rel)
        if at_destination == wanted:
            continue
        lost.append(
            f"{job}: {rel} (version {len(ledger.versions[(job, rel)])}) is lost: "
            f"source {_describe(in_source)}, destination {_describe(at_destination)}"
        )
    return lost


def _describe(found: str | None) -> str:
    return "missing" if found is None else f"holds other bytes ({found[:8]})"
