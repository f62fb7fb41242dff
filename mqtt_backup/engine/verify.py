"""Pure: which source files may be deleted after a verification, and why the rest are kept.

The deletion rule lives here (docs/design.md, "Deletion safety"). A file is deleted only
if this run's comparison reported it as matching — ``rclone checksum`` of the destination,
started after the transfer ended, against the source's hash taken since the first listing
started, or ``rclone check`` of both sides — it is older than ``min_age`` and than the
start of the first listing, and its size and modtime are the same in the first listing
and in the second, taken after the comparison. Everything else is kept, counted under
one reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

# path → (size, modtime as rclone printed it)
Listing = dict[str, tuple[int, str]]

# Why a file was kept, as the state's ``deletion.kept`` and the history count them.
DIFFERS = "differs"
MISSING = "missing_on_destination"
CHECK_ERROR = "check_error"
NOT_CHECKED = "not_checked"
APPEARED = "appeared_during_run"
CHANGED = "changed_during_run"
TOO_YOUNG = "too_young"
NOT_LISTABLE = "name_not_listable"
SKIPPED_AT_DELETE = "changed_before_delete"
DELETE_FAILED = "delete_failed"
DRY_RUN = "dry_run"

# Reasons that a later run settles by itself: the file is new or still being written.
# Any other reason means a file is not safely at the destination, and the run says so.
SETTLING = frozenset({TOO_YOUNG, APPEARED, CHANGED, SKIPPED_AT_DELETE, DRY_RUN})

_PHRASES = {
    DIFFERS: "differing at the destination even after a second copy",
    MISSING: "missing at the destination",
    CHECK_ERROR: "unreadable for the check",
    NOT_CHECKED: "not reported by the check",
    NOT_LISTABLE: "whose name cannot be passed to rclone exactly (a line break, or not UTF-8)",
    DELETE_FAILED: "that rclone could not delete",
}
NAMES_KEPT = 5


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    """Paths to delete (sorted), the files verified, and kept files by reason.

    ``kept_files`` holds the first few names of each reason, for the log and the history.
    """

    delete: list[str]
    verified: int
    kept: dict[str, int] = field(default_factory=dict)
    kept_files: dict[str, list[str]] = field(default_factory=dict)


def parse_rclone_time(text: str) -> datetime | None:
    """rclone's ISO times (``Z`` or an offset, up to nanoseconds) as aware datetimes."""
    # Since Python 3.11 fromisoformat reads "Z" and drops digits past microseconds itself.
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def parse_lsjson(text: str) -> Listing:
    """``rclone lsjson --files-only`` output as a Listing."""
    listing: Listing = {}
    for entry in json.loads(text or "[]"):
        if entry.get("IsDir"):
            continue
        listing[str(entry["Path"])] = (int(entry.get("Size", -1)), str(entry.get("ModTime", "")))
    return listing


def read_report(text: str) -> set[str]:
    """A ``check --match/--differ/…`` file: one path per line, taken as written."""
    return {line for line in text.split("\n") if line}


def listable(path: str) -> bool:
    """Whether a listed name can be handed back to rclone as that file's exact name.

    A newline or CR splits a one-name-per-line list file. U+FFFD is how rclone's JSON
    listing shows bytes that are not UTF-8: the file's real name is another one.
    """
    return "\n" not in path and "\r" not in path and "\ufffd" not in path


def unaccounted(before: Listing, after: Listing, *reports: Iterable[str]) -> list[str]:
    """Files both listings saw that no report of the check names: the check skipped them.

    rclone check exits 1 both for "differences found" and for "could not read the
    destination"; only this tells a check that compared every file from one that did not.
    """
    seen: set[str] = set()
    for report in reports:
        seen.update(report)
    return sorted(p for p in before.keys() & after.keys() if listable(p) and p not in seen)


def plan_deletion(
    *,
    matched: Iterable[str],
    before: Listing,
    after: Listing,
    not_modified_after: datetime,
    differ: Iterable[str] = (),
    missing: Iterable[str] = (),
    errors: Iterable[str] = (),
) -> DeletionPlan:
    """Decide file by file; every file of either listing is either deleted or kept once."""
    matched_set, differ_set = set(matched), set(differ)
    missing_set, error_set = set(missing), set(errors)
    # Paths no listing saw are not files we know of (a name with a newline, split
    # across lines of a report, shows up as such fragments): nothing to count.
    universe = sorted(set(before) | set(after))
    kept: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    delete: list[str] = []
    verified = 0
    for path in universe:
        reason = _reason(path, matched_set, differ_set, missing_set, error_set, before, after)
        if reason is None:
            verified += 1
            reason = _age_or_name(path, before, not_modified_after)
        if reason is None:
            delete.append(path)
            continue
        kept[reason] += 1
        shown = names.setdefault(reason, [])
        if len(shown) < NAMES_KEPT:
            shown.append(path)
    return DeletionPlan(delete, verified, dict(kept), names)


def kept_warning(kept: dict[str, int], names: dict[str, list[str]]) -> str | None:
    """A sentence naming the files kept for a reason that a later run will not settle."""
    parts = []
    for reason, count in sorted(kept.items(), key=lambda item: (-item[1], item[0])):
        if reason in SETTLING or not count:
            continue
        phrase = _PHRASES.get(reason, reason)
        shown = ", ".join(names.get(reason, [])[:2])
        more = f" ({shown}{', …' if count > 2 else ''})" if shown else ""
        parts.append(f"{count} {'file' if count == 1 else 'files'} {phrase}{more}")
    if not parts:
        return None
    return "kept source files not proven at the destination: " + "; ".join(parts)


def _reason(
    path: str,
    matched: set[str],
    differ: set[str],
    missing: set[str],
    errors: set[str],
    before: Listing,
    after: Listing,
) -> str | None:
    """Why ``path`` is not verified, or None when it is."""
    if not listable(path):
        return NOT_LISTABLE
    if path in differ:
        return DIFFERS
    if path in missing:
        return MISSING
    if path in errors:
        return CHECK_ERROR
    if path not in before:
        # The first listing did not see it: a match says nothing of the file the second
        # listing saw, and the comparison is asked only about the files of the first.
        return APPEARED
    if path not in matched:
        return NOT_CHECKED
    if after.get(path) != before[path]:
        return CHANGED
    return None


def _age_or_name(path: str, before: Listing, not_modified_after: datetime) -> str | None:
    modified = parse_rclone_time(before[path][1])
    if modified is None or modified > not_modified_after:
        return TOO_YOUNG
    return None


_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "\\*?[]{},"})
# rclone reads a filter file with Go's bufio.Scanner, which refuses lines over 64 KiB.
_MAX_RULE_BYTES = 60_000


def glob_escape(text: str) -> str:
    """``text`` as a literal rclone glob: every wildcard and brace character escaped."""
    return text.translate(_GLOB_ESCAPES)


def exact_path_rules(paths: Iterable[str]) -> str:
    """An rclone filter file that includes exactly ``paths`` and excludes everything else.

    rclone tries every rule in turn on every file, so the fewer rules the faster: the
    paths go into as few lines as rclone's line limit allows, as alternatives of one
    glob each, ``+ /{top,dir/{a,b},other/{c}}`` (100,000 files: 30 rules; one rule per
    folder made 200, which cost rclone 2 s more). Each line starts with ``+``, so names
    starting with ``#`` or ``;`` are not comments, and ends with ``}``, so rclone's
    trimming of the line cannot eat a name's trailing spaces. An unescaped ``{`` always
    follows ``/``, never another ``{``: ``{{`` would open an rclone regexp.
    """
    paths = list(paths)
    # One translate over all paths at once is five times faster than one per path.
    joined = "\n".join(paths)
    escaped = glob_escape(joined).split("\n") if paths else []
    # The plan only holds listable() paths; a line break here would split a rule.
    if "\r" in joined or len(escaped) != len(paths):
        raise ValueError("a path with a line break cannot go into a filter file")
    by_dir: dict[str, list[str]] = {}
    for path in escaped:
        folder, _, name = path.rpartition("/")
        by_dir.setdefault(folder, []).append(name)
    parts: list[str] = []
    for folder in sorted(by_dir):
        names = sorted(by_dir[folder])
        if not folder:
            parts.extend(names)
            continue
        prefix = folder + "/{"
        room = _MAX_RULE_BYTES - _utf8_len(prefix) - 8
        parts.extend(prefix + ",".join(chunk) + "}" for chunk in _chunks(names, room))
    lines = ["+ /{" + ",".join(chunk) + "}" for chunk in _chunks(parts, _MAX_RULE_BYTES - 8)]
    lines.append("- **")
    return "\n".join(lines) + "\n"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _chunks(items: list[str], limit: int) -> Iterator[list[str]]:
    """``items`` in runs whose comma-joined UTF-8 size stays within ``limit`` bytes."""
    if _utf8_len(",".join(items)) <= limit:
        if items:
            yield items
        return
    chunk: list[str] = []
    size = 0
    for item in items:
        length = _utf8_len(item) + 1
        if chunk and size + length > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    yield chunk
