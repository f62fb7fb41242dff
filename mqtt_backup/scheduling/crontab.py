"""Crontab lines on APScheduler 3: cron's day rule, its daylight-saving behaviour, the longest gap.

APScheduler's CronTrigger differs from crontab in three ways that this module corrects:

- it numbers weekdays from Monday = 0, crontab from Sunday = 0 (and 7);
- it requires day-of-month AND day-of-week to match, while crontab runs a line on either
  when both fields are restricted (neither starts with ``*``): ``0 3 13 * 5`` is every 13th
  and every Friday, not only Friday the 13th;
- on the night clocks go back it fires a fixed time such as 02:30 twice, once in each pass
  of the repeated hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import BaseField

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_FIELDS = ("month", "day", "day_of_week")
_ANY_400_YEARS = "2000-2399"
# The longest gap of a line is searched over at least a year of its fires; a line that fires
# on February 29 only needs up to 8 years (2096 to 2104) to show two of them.
_GAP_SEARCH = timedelta(days=10 * 366)
_MINUTES_PER_DAY = 1440


class CrontabTrigger(BaseTrigger):
    """Fires when a 5-field crontab line would, in ``timezone``; fire times are in UTC.

    Daylight saving, as cron does it for lines with a fixed time (neither minute nor hour starts
    with ``*``): when clocks go back, a time in the repeated hour fires once, in its first pass.
    When clocks go forward, a time that does not exist that day (02:30 in Europe/Berlin) fires
    once, shifted by the change (03:30 CEST, 24 hours after the day before); the line goes on
    from there. Lines with ``*`` in minute or hour follow the clock, so ``30 * * * *`` still fires
    every real hour, both passes of the repeated one included.

    Fire times are returned in UTC because APScheduler compares two datetimes of the same zone by
    their wall-clock reading, which cannot tell the two passes of a repeated hour apart.
    """

    __slots__ = ("_days", "_fixed_time", "_spec", "_triggers", "text", "timezone")

    def __init__(self, text: str, timezone: tzinfo | None = None) -> None:
        """Raises ValueError for a line that is not 5 valid fields."""
        fields = text.split()
        if len(fields) != 5:
            raise ValueError("a crontab line has 5 fields: minute hour day month weekday")
        minute, hour, day, month, weekday = fields
        self.text = " ".join(fields)
        self._spec = (minute, hour, month)
        # As in Vixie cron and cronie, a field that starts with "*" (also "*/2") is unrestricted.
        if day.startswith("*") or weekday.startswith("*"):
            days = [(day, weekday)]
        else:
            # Either day field: one trigger for each. Every month has every weekday, but not
            # every day ("0 0 31 2 1" is every Monday in February); a trigger that never fires
            # is left out, as it would search up to the year 9999 on every call.
            days = [(day, "*"), ("*", weekday)] if self._ever(day, "*") else [("*", weekday)]
        self._days = days
        self._triggers = tuple(self._cron(d, w, timezone) for d, w in days)
        self.timezone: tzinfo = self._triggers[0].timezone
        self._fixed_time = not minute.startswith("*") and not hour.startswith("*")

    def _cron(
        self, day: str, weekday: str, timezone: tzinfo | None, year: str | None = None
    ) -> CronTrigger:
        minute, hour, month = self._spec
        return CronTrigger(
            year=year,
            month=month,
            day=day,
            day_of_week=_crontab_weekdays(weekday),
            hour=hour,
            minute=minute,
            timezone=timezone,
        )

    def _ever(self, day: str, weekday: str) -> bool:
        # The calendar repeats every 400 years, so a line that fires at all fires in any 400.
        probe = self._cron(day, weekday, UTC, year=_ANY_400_YEARS)
        return probe.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is not None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire = self._earliest(previous_fire_time, now)
        while fire is not None and self._fixed_time and fire.astimezone(self.timezone).fold:
            # The second pass of a repeated hour: this wall-clock time has fired in the first.
            fire = self._earliest(fire, fire)
        return fire

    def _earliest(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        now = now.astimezone(UTC)
        if previous_fire_time is not None:
            # CronTrigger searches from the earlier of now and just after the previous fire.
            # Its guard against returning the previous fire again compares datetimes of two
            # zones, which never compare equal in a repeated hour: so now is never earlier.
            now = max(now, previous_fire_time.astimezone(UTC) + timedelta(microseconds=1))
        fires = (t.get_next_fire_time(previous_fire_time, now) for t in self._triggers)
        return min((_instant(f) for f in fires if f is not None), default=None)

    def fires_ever(self) -> bool:
        """False for a line whose day and month fields never meet, like ``0 0 30 2 *``."""
        return any(self._ever(day, weekday) for day, weekday in self._days)

    def longest_gap(self, start: date) -> timedelta:
        """The longest time between two fires from ``start`` on, in wall-clock time.

        At least a year of fires is looked at, so a gap over a weekend, a short month or the
        months a line skips is found. Across a daylight-saving change the real gap is an hour
        longer or shorter.
        """
        fields = {field.name: field for field in self._triggers[0].fields}
        hours = _matching(fields["hour"], [datetime(2000, 1, 1, h, tzinfo=UTC) for h in range(24)])
        minutes = _matching(
            fields["minute"], [datetime(2000, 1, 1, 0, m, tzinfo=UTC) for m in range(60)]
        )
        times = [h * 60 + m for h in hours for m in minutes]
        longest = max((b - a for a, b in pairwise(times)), default=0)
        # From the day's last fire to the first fire of the next day the line fires on.
        overnight = _MINUTES_PER_DAY - times[-1] + times[0]
        if self.text.split()[2:] == ["*", "*", "*"]:
            return timedelta(minutes=max(longest, overnight))
        first: date | None = None
        previous: date | None = None
        day = start
        while day - start < _GAP_SEARCH:
            if self._fires_on(day):
                if first is None or previous is None:
                    first = day
                else:
                    days = (day - previous).days
                    longest = max(longest, overnight + (days - 1) * _MINUTES_PER_DAY)
                    if (day - first).days > 366:
                        break
                previous = day
            day += timedelta(days=1)
        return timedelta(minutes=longest)

    def _fires_on(self, day: date) -> bool:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return any(
            all(
                field.get_next_value(midnight) == field.get_value(midnight)
                for field in trigger.fields
                if field.name in _DAY_FIELDS
            )
            for trigger in self._triggers
        )

    def __str__(self) -> str:
        return f"crontab[{self.text}]"

    def __repr__(self) -> str:
        return f"<CrontabTrigger ({self.text!r}, timezone={self.timezone})>"


def _instant(fire: datetime) -> datetime:
    """``fire`` in UTC; a wall-clock time skipped by a spring-forward counts as shifted by it."""
    utc = fire.astimezone(UTC)
    if utc.astimezone(fire.tzinfo).replace(tzinfo=None) != fire.replace(tzinfo=None):
        # fold=0 reads a skipped time with the offset before the change: 02:30 becomes 03:30.
        utc = fire.replace(fold=0).astimezone(UTC)
    return utc


def _matching(field: BaseField, moments: Sequence[datetime]) -> list[int]:
    """The values of a CronTrigger field (hour or minute) that the line fires on."""
    return [
        field.get_value(moment)
        for moment in moments
        if field.get_next_value(moment) == field.get_value(moment)
    ]


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
