"""Durations as users write them: ``30s``, ``5m``, ``6h``, ``7d``, or combined like ``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
# A century: longer than any timeout, age or interval means anything, and short enough that
# adding it to or subtracting it from today stays within what datetime and the OS timers hold.
MAX_DURATION = timedelta(days=36500)
# Longer text is no duration anyone writes; refusing it early keeps the regex work small.
_MAX_TEXT = 64


class DurationTooLong(ValueError, OverflowError):
    """Longer than MAX_DURATION.

    A ValueError, so config validation reports it like any bad value; an OverflowError, so
    code that caught timedelta's overflow (and has a sharper limit of its own) still does.
    """


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``"90s"``, ``"1h30m"`` or a number of seconds.

    Raises ValueError on anything else, and DurationTooLong beyond MAX_DURATION.
    """
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), value)
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 6h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(value, value)
    text = str(value).strip().lower().replace(" ", "")
    if len(text) > _MAX_TEXT or not _WHOLE.fullmatch(text):
        shown = str(value) if len(str(value)) <= _MAX_TEXT else f"{str(value)[:_MAX_TEXT]}…"
        raise ValueError(f"{shown!r} is not a duration; write it like 30s, 5m, 6h or 7d")
    return _bounded(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)), value)


def _bounded(seconds: float, written: object) -> timedelta:
    # A float past about 1e308 is inf, and inf or nan would reach timedelta as OverflowError.
    if math.isnan(seconds):
        raise ValueError(f"{written!r} is not a duration; write it like 30s, 5m, 6h or 7d")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(
            f"{_shown(written)} is too long: a duration can be at most "
            f"{format_duration(MAX_DURATION)} (100 years)"
        )
    return timedelta(seconds=seconds)


def _shown(written: object) -> str:
    if isinstance(written, timedelta):
        return format_duration(written)
    if isinstance(written, int | float):
        return f"{written} seconds"
    text = str(written)
    return repr(text if len(text) <= _MAX_TEXT else f"{text[:_MAX_TEXT]}…")


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the units parse_duration accepts."""
    seconds = delta.total_seconds()
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    out = []
    remaining = int(seconds)
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
