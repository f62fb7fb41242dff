"""Job schedules: 5-field cron or ``every <duration>``, and their APScheduler triggers."""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from mqtt_backup.config.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

    from mqtt_backup.scheduling.crontab import CrontabTrigger

_EVERY = re.compile(r"^every\s+(\S+)$", re.IGNORECASE)
# Shorter intervals would run a backup back to back; longer ones are a calendar matter, which a
# cron line says better ("0 3 1 1 *" is once a year) and which the trigger's arithmetic must not
# carry past the year 9999.
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=366)


@functools.lru_cache(maxsize=4096)
def _crontab(text: str, timezone: tzinfo | None) -> CrontabTrigger:
    # Cached: a trigger holds no state between calls, and a config of 1,000 jobs often has a
    # handful of lines. Imported here: APScheduler pulls in asyncio and importlib.metadata
    # (~40 ms), which a run-job of a config without cron schedules never needs.
    from mqtt_backup.scheduling.crontab import CrontabTrigger

    return CrontabTrigger(text, timezone)


@functools.lru_cache(maxsize=4096)
def _fires_ever(text: str) -> bool:
    return _crontab(text, UTC).fires_ever()


class Schedule(BaseModel):
    """A parsed schedule; ``text`` is what the user wrote."""

    # Built on first use, as the config models are (config/models.py).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: Literal["cron", "interval"]
    text: str
    interval_seconds: float = 0.0

    def trigger(self, timezone: tzinfo | None = None) -> BaseTrigger:
        """The APScheduler trigger that fires on this schedule (cron: in ``timezone``)."""
        if self.kind == "interval":
            from apscheduler.triggers.interval import IntervalTrigger

            # UTC: an interval is real time, and APScheduler compares datetimes of one zone by
            # their wall-clock reading, which repeats for an hour when clocks go back.
            return IntervalTrigger(seconds=self.interval_seconds, timezone=UTC)
        return _crontab(self.text, timezone)

    def period(self) -> timedelta:
        """The longest time between two runs: the interval, or a cron line's longest gap."""
        if self.kind == "interval":
            return timedelta(seconds=self.interval_seconds)
        return _cron_period(self.text, datetime.now(UTC).date())

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=4096)
def _cron_period(text: str, today: date) -> timedelta:
    # Cached: discovery asks for every job's period, and a line's gaps take a year to survey.
    return _crontab(text, UTC).longest_gap(today)


def parse_schedule(text: str) -> Schedule:
    """Parse ``"0 3 * * *"`` or ``"every 6h"``; raises ValueError with a readable reason."""
    text = " ".join(text.split())
    every = _EVERY.match(text)
    if every:
        try:
            interval = parse_duration(every.group(1))
        except OverflowError:
            interval = timedelta.max
        if interval < MIN_INTERVAL:
            raise ValueError("an interval schedule must be at least 'every 1s'")
        if interval > MAX_INTERVAL:
            raise ValueError(
                "an interval schedule can be at most 'every 366d'; for rarer runs write a "
                "cron line, like '0 3 1 1 *' for once a year"
            )
        return Schedule(
            kind="interval",
            text=f"every {format_duration(interval)}",
            interval_seconds=interval.total_seconds(),
        )
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"{text!r} is neither a 5-field cron expression (like '0 3 * * *') "
            "nor an interval (like 'every 6h')"
        )
    try:
        fires = _fires_ever(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None
    if not fires:
        raise ValueError(
            f"{text!r} never runs: no month has the day it names (check the day and month fields)"
        )
    return Schedule(kind="cron", text=text)
