"""Pure: the source's hashes, read from ``rclone hashsum`` and written for ``rclone checksum``.

With ``verify: checksum`` each side is hashed once (docs/design.md, "Deletion safety"):
the source by ``rclone hashsum`` beside the transfer, the destination by ``rclone
checksum`` against a sum list written here. rclone neither escapes names in the sums it
writes nor unescapes them when it reads a sum list, so this module decides which names a
list carries exactly; every other file is compared by ``rclone check`` as before.

A name goes into the list only when rclone is certain to read it back as that file's
name and no other:

- no line break (``verify.listable``): a line per name;
- its line fits rclone's 4 KiB read buffer: a longer line is read as two lines;
- already in Unicode NFC, with no character this Python does not know: rclone looks
  each line up in NFC, so two names that normalize alike would share one hash.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mqtt_backup.engine.verify import listable

# rclone's hash types in the order ``rclone check`` prefers them (its bit order: the
# built-in types, then those the backends register), with their width in hex digits.
HASH_WIDTHS = {
    "md5": 32,
    "sha1": 40,
    "whirlpool": 128,
    "crc32": 8,
    "sha256": 64,
    "sha512": 128,
    "blake3": 64,
    "xxh3": 16,
    "xxh128": 32,
    "dropbox": 64,
    "hidrive": 40,
    "mailru": 40,
    "quickxor": 40,
}
# rclone reads a sum list with a bufio.Reader of 4096 bytes; stay well inside it.
MAX_LINE_BYTES = 4000
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class SumList:
    """A sum list for ``rclone checksum``, the names it carries, and the files it cannot."""

    text: str
    names: frozenset[str]
    # Files to compare with ``rclone check`` instead: no usable hash, or a name the list
    # cannot carry exactly.
    others: list[str]


def pick_hash(source: Iterable[str], destination: Iterable[str]) -> str | None:
    """The hash type ``rclone check`` would compare these two sides by, if it is one we read."""
    common = set(source) & set(destination)
    return next((name for name in HASH_WIDTHS if name in common), None)


def parse_hashsum(text: str, hash_type: str) -> dict[str, str]:
    """``rclone hashsum`` output (``<hash>  <name>`` per line) as name → hash.

    A line without a full hash (rclone prints spaces when a backend has none) is skipped,
    and so is a name seen twice: it cannot say which hash is the file's.
    """
    width = HASH_WIDTHS[hash_type]
    found: dict[str, str] = {}
    twice: set[str] = set()
    for line in text.split("\n"):
        value, gap, name = line[:width], line[width : width + 2], line[width + 2 :]
        if gap != "  " or not name or not _HEX.fullmatch(value):
            continue
        if name in found:
            twice.add(name)
        found[name] = value
    for name in twice:
        del found[name]
    return found


def _carried(name: str, value: str) -> bool:
    if name.isascii():  # NFC already, every character known, one byte each
        return len(value) + 2 + len(name) <= MAX_LINE_BYTES
    if unicodedata.normalize("NFC", name) != name:
        return False
    if any(unicodedata.category(char) == "Cn" for char in name):
        return False
    line = f"{value}  {name}"
    return len(line.encode("utf-8", "surrogateescape")) <= MAX_LINE_BYTES


def sum_list(listed: Iterable[str], sums: Mapping[str, str]) -> SumList:
    """The sum list for the listed files that have a hash; the other listed files apart.

    Names with a line break are in neither part: the plan keeps them. When the listing
    holds such a name, no hash is used at all: split across lines of rclone's output, it
    could read as another file's line.
    """
    names = list(listed)
    trusted = all(listable(name) for name in names)
    carried: list[str] = []
    others: list[str] = []
    for name in sorted(n for n in names if listable(n)):
        value = sums.get(name) if trusted else None
        if value is not None and _carried(name, value):
            carried.append(name)
        else:
            others.append(name)
    text = "".join(f"{sums[name]}  {name}\n" for name in carried)
    return SumList(text, frozenset(carried), others)
