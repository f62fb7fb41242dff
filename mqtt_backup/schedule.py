"""Job schedules: 5-field cron or ``every <duration>``, and their APScheduler triggers."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from mqtt_backup.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger

_EVERY = re.compile(r"^every\s+(\S+)$", re.IGNORECASE)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_trigger(text: str, timezone: tzinfo | None) -> CronTrigger:
    # Imported here: APScheduler pulls in asyncio and importlib.metadata (~40 ms), which a
    # run-job of a config without cron schedules never needs.
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = text.split(" ")
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_weekdays(weekday),
        timezone=timezone,
    )


def _crontab_weekdays(field: str) -> str:
    """Numeric crontab weekdays (0 or 7 = Sunday) as names.

    APScheduler 3 numbers weekdays from Monday = 0, so "0 3 * * 0" would run on Mondays.
    """
    if not any(ch.isdigit() for ch in field):
        return field
    days: set[int] = set()
    for item in field.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first_text, last_text = span.split("-", 1)
            first, last = _weekday_number(first_text), _weekday_number(last_text)
        else:
            first = last = _weekday_number(span)
            if step_text:
                last = 6
        if last == 0 and first > 0:
            last = 7
        if first > last or step < 1:
            raise ValueError(f"weekday range {item!r} is not valid")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _weekday_number(text: str) -> int:
    text = text.strip().lower()
    if text in _DAYS:
        return _DAYS.index(text)
    if not text.isdigit() or int(text) > 7:
        raise ValueError(f"weekday {text!r} is not 0-7 or a day name")
    return int(text)


class Schedule(BaseModel):
    """A parsed schedule; ``text`` is what the user wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cron", "interval"]
    text: str
    interval_seconds: float = 0.0

    def trigger(self, timezone: tzinfo | None = None) -> BaseTrigger:
        """The APScheduler trigger that fires on this schedule."""
        if self.kind == "interval":
            from apscheduler.triggers.interval import IntervalTrigger

            return IntervalTrigger(seconds=self.interval_seconds, timezone=timezone or UTC)
        return _cron_trigger(self.text, timezone)

    def period(self) -> timedelta:
        """The usual time between two runs (for cron, the gap after the next fire time)."""
        if self.kind == "interval":
            return timedelta(seconds=self.interval_seconds)
        return _cron_period(self.text)

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=4096)
def _cron_period(text: str) -> timedelta:
    # Cached: discovery asks for every job's period, and building a trigger costs ~1 ms.
    trigger = _cron_trigger(text, UTC)
    first = trigger.get_next_fire_time(None, datetime.now(UTC))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    if first is None or second is None:
        return timedelta(days=1)
    return second - first


def parse_schedule(text: str) -> Schedule:
    """Parse ``"0 3 * * *"`` or ``"every 6h"``; raises ValueError with a readable reason."""
    text = " ".join(text.split())
    every = _EVERY.match(text)
    if every:
        interval = parse_duration(every.group(1))
        if interval < timedelta(seconds=1):
            raise ValueError("an interval schedule must be at least 'every 1s'")
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
        _cron_trigger(text, UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None
    return Schedule(kind="cron", text=text)
