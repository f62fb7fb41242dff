"""Pure: what an rclone exit code means, and whether trying again may help."""

from __future__ import annotations

import signal
from dataclasses import dataclass

# rclone 1.69 swapped codes 1 and 2: before it, 1 was "syntax or usage error" and
# 2 "error not otherwise categorised"; from 1.69 on it is the other way round.
SWAPPED_IN = (1, 69, 0)

_USAGE = "rclone rejected its command line (syntax or usage error)"
_OTHER = "rclone reported an error"

_FIXED: dict[int, tuple[str, bool]] = {
    0: ("rclone finished successfully", False),
    3: ("directory not found", False),
    4: ("file not found", False),
    5: ("rclone gave up after a temporary error", True),
    6: ("rclone hit an error that retrying will not fix", False),
    7: ("rclone hit a fatal error", False),
    8: ("the transfer limit (--max-transfer) was reached", False),
    9: ("no files were transferred", False),
    10: ("the time limit (--max-duration) was reached", True),
}


@dataclass(frozen=True, slots=True)
class ExitMeaning:
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
            return ExitMeaning(_USAGE, False)
        # Uncategorised errors are mostly network and I/O trouble; rclone reserves
        # 6 and 7 for the errors it knows retrying cannot fix.
        return ExitMeaning(_OTHER, True)
    if code < 0:
        return ExitMeaning(f"rclone was killed by {_signal_name(-code)}", True)
    if code > 128:
        return ExitMeaning(f"rclone was killed by {_signal_name(code - 128)}", True)
    return ExitMeaning(f"rclone exited with unknown code {code}", False)
