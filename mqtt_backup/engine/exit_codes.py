"""Pure: what an rclone exit code means, and whether trying again may help."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum

# rclone 1.69 swapped codes 1 and 2: before it, 1 was "syntax or usage error" and
# 2 "error not otherwise categorised"; from 1.69 on it is the other way round.
SWAPPED_IN = (1, 69, 0)

_USAGE = "rclone rejected its command line (syntax or usage error)"
_OTHER = "rclone reported an error"


class ExitKind(Enum):
    """What rclone's exit code says happened, whatever the version's numbering."""

    OK = "ok"
    USAGE = "usage"
    OTHER = "other"
    DIRECTORY_NOT_FOUND = "directory_not_found"
    FILE_NOT_FOUND = "file_not_found"
    TEMPORARY = "temporary"
    NO_RETRY = "no_retry"
    FATAL = "fatal"
    TRANSFER_LIMIT = "transfer_limit"
    NO_TRANSFERS = "no_transfers"
    DURATION_LIMIT = "duration_limit"
    KILLED = "killed"
    UNKNOWN = "unknown"


_FIXED: dict[int, tuple[ExitKind, str, bool]] = {
    0: (ExitKind.OK, "rclone finished successfully", False),
    3: (ExitKind.DIRECTORY_NOT_FOUND, "directory not found", False),
    4: (ExitKind.FILE_NOT_FOUND, "file not found", False),
    5: (ExitKind.TEMPORARY, "rclone gave up after a temporary error", True),
    6: (ExitKind.NO_RETRY, "rclone hit an error that retrying will not fix", False),
    7: (ExitKind.FATAL, "rclone hit a fatal error", False),
    8: (ExitKind.TRANSFER_LIMIT, "the transfer limit (--max-transfer) was reached", False),
    9: (ExitKind.NO_TRANSFERS, "no files were transferred", False),
    10: (ExitKind.DURATION_LIMIT, "the time limit (--max-duration) was reached", True),
}


@dataclass(frozen=True, slots=True)
class ExitMeaning:
    kind: ExitKind
    sentence: str
    retryable: bool


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(code: int, version: tuple[int, int, int]) -> ExitMeaning:
    """The meaning of ``code`` from the given rclone version, and whether it is retryable."""
    if code in _FIXED:
        return ExitMeaning(*_FIXED[code])
    if code in (1, 2):
        usage_code = 2 if version >= SWAPPED_IN else 1
        if code == usage_code:
            return ExitMeaning(ExitKind.USAGE, _USAGE, False)
        # Uncategorised errors are mostly network and I/O trouble; rclone reserves
        # 6 and 7 for the errors it knows retrying cannot fix.
        return ExitMeaning(ExitKind.OTHER, _OTHER, True)
    if code < 0:
        return ExitMeaning(ExitKind.KILLED, f"rclone was killed by {_signal_name(-code)}", True)
    if code > 128:
        name = _signal_name(code - 128)
        return ExitMeaning(ExitKind.KILLED, f"rclone was killed by {name}", True)
    return ExitMeaning(ExitKind.UNKNOWN, f"rclone exited with unknown code {code}", False)
