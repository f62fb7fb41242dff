"""Crontab semantics of cron schedules: the day rule, daylight saving, and the longest gap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from mqtt_backup.scheduling.crontab import CrontabTrigger
from mqtt_backup.scheduling.triggers import parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(text: str, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in [start, end), asked for the way APScheduler asks after each run."""
    trigger = parse_schedule(text).trigger(tz)
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        out.append(fire)
        # The scheduler passes the fire it just ran and the time it asks (here: that fire).
        fire = trigger.get_next_fire_time(fire, fire)
    return out


def days_of(text: str, year: int, month: int) -> list[int]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return [f.day for f in fires(text, UTC, start, end)]


# day of month and day of week


def test_both_day_fields_restricted_fire_on_either() -> None:
    # January 2026: the 13th is a Tuesday; the Fridays are the 2nd, 9th, 16th, 23rd and 30th.
    assert days_of("0 3 13 * 5", 2026, 1) == [2, 9, 13, 16, 23, 30]


def test_a_friday_the_13th_fires_once() -> None:
    # February 2026: the 13th is a Friday.
    assert days_of("0 3 13 * 5", 2026, 2) == [6, 13, 20, 27]


def test_the_crontab_manual_example() -> None:
    # crontab(5): "30 4 1,15 * 5" runs on the 1st and 15th of each month, plus every Friday.
    assert days_of("30 4 1,15 * 5", 2026, 1) == [1, 2, 9, 15, 16, 23, 30]


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("0 3 13 * *", [13]),
        ("0 3 * * 5", [2, 9, 16, 23, 30]),
        # A field starting with "*" is unrestricted, as in Vixie cron and cronie: both must match.
        ("0 3 */2 * 5", [9, 23]),
        ("0 3 13 * */2", [13]),  # a Tuesday, which */2 (Sun, Tue, Thu, Sat) includes
        ("0 3 13 * 0", [4, 11, 13, 18, 25]),  # Sunday as 0
        ("0 3 13 * 7", [4, 11, 13, 18, 25]),  # and as 7
    ],
)
def test_the_day_rule_only_applies_when_both_fields_are_restricted(
    text: str, days: list[int]
) -> None:
    assert days_of(text, 2026, 1) == days


def test_month_still_restricts_both_day_fields() -> None:
    # Only in February: the 13th and every Friday of February, nothing in January or March.
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    found = [(f.month, f.day) for f in fires("0 3 13 2 5", UTC, start, end)]
    assert found == [(2, 6), (2, 13), (2, 20), (2, 27)]


# daylight saving time


def local_days(found: list[datetime], tz: tzinfo) -> list[str]:
    return [f.astimezone(tz).strftime("%m-%d %H:%M %Z") for f in found]


def test_fall_back_runs_a_fixed_time_once_in_berlin() -> None:
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    found = fires(
        "30 2 * * *", BERLIN, datetime(2026, 10, 24, 12, tzinfo=BERLIN),
        datetime(2026, 10, 27, tzinfo=BERLIN),
    )  # fmt: skip
    assert local_days(found, BERLIN) == ["10-25 02:30 CEST", "10-26 02:30 CET"]
    assert found[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_fall_back_runs_a_fixed_time_once_in_new_york() -> None:
    # 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST; 01:30 happens twice.
    found = fires(
        "30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12, tzinfo=NEW_YORK),
        datetime(2026, 11, 3, tzinfo=NEW_YORK),
    )  # fmt: skip
    assert local_days(found, NEW_YORK) == ["11-01 01:30 EDT", "11-02 01:30 EST"]


def test_fall_back_once_even_when_asked_later_than_the_fire() -> None:
    # The scheduler may ask for the next fire a little after running one.
    trigger = parse_schedule("30 2 * * *").trigger(BERLIN)
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    after = trigger.get_next_fire_time(first, first + timedelta(minutes=20))
    assert after == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # A service started during the repeated hour, after the first 02:30, waits for tomorrow.
    started = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN).replace(fold=1)
    assert trigger.get_next_fire_time(None, started) == after


def test_spring_forward_runs_a_missing_time_once_shifted_in_berlin() -> None:
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    found = fires(
        "30 2 * * *", BERLIN, datetime(2026, 3, 28, 12, tzinfo=BERLIN),
        datetime(2026, 3, 31, tzinfo=BERLIN),
    )  # fmt: skip
    assert local_days(found, BERLIN) == ["03-29 03:30 CEST", "03-30 02:30 CEST"]
    # 24 hours after the run of the day before, which was at 02:30 CET.
    assert found[0] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_spring_forward_runs_a_missing_time_once_shifted_in_new_york() -> None:
    # 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
    found = fires(
        "30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK),
        datetime(2026, 3, 10, tzinfo=NEW_YORK),
    )  # fmt: skip
    assert local_days(found, NEW_YORK) == ["03-08 03:30 EDT", "03-09 02:30 EDT"]


def test_spring_forward_runs_a_line_with_several_missing_times_once() -> None:
    found = fires(
        "0,30 2 * * *", BERLIN, datetime(2026, 3, 29, tzinfo=BERLIN),
        datetime(2026, 3, 30, tzinfo=BERLIN),
    )  # fmt: skip
    assert local_days(found, BERLIN) == ["03-29 03:00 CEST"]


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 10, 25), 25), (date(2026, 3, 29), 23)])
def test_a_line_with_a_wildcard_hour_follows_the_clock(day: date, hours: int) -> None:
    # "30 * * * *" runs every real hour, both passes of a repeated hour included.
    start = datetime(day.year, day.month, day.day, tzinfo=BERLIN)
    found = fires("30 * * * *", BERLIN, start, start.replace(day=day.day + 1))
    assert len(found) == hours
    assert all(b - a == timedelta(hours=1) for a, b in zip(found, found[1:], strict=False))


def test_fire_times_are_utc() -> None:
    # APScheduler compares two times of one zone by their clock reading, which cannot tell the
    # passes of a repeated hour apart; UTC can.
    fire = parse_schedule("0 3 * * *").trigger(BERLIN).get_next_fire_time(
        None, datetime(2026, 11, 29, tzinfo=UTC)
    )
    assert fire == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert fire is not None and fire.tzinfo is UTC


def test_interval_schedules_count_real_time_across_a_change() -> None:
    trigger = parse_schedule("every 1h").trigger(BERLIN)
    start = datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN)
    first = trigger.get_next_fire_time(None, start)
    assert first is not None
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    assert second is not None and second - first == timedelta(hours=1)


# the longest gap (the default of stale_after)


@pytest.mark.parametrize(
    ("text", "gap"),
    [
        ("0 3 * * *", timedelta(days=1)),
        ("*/5 * * * *", timedelta(minutes=5)),
        ("0 */6 * * *", timedelta(hours=6)),
        ("0 3 * * 1-5", timedelta(days=3)),  # Friday to Monday
        ("0 9-17 * * 1-5", timedelta(days=2, hours=16)),  # Friday 17:00 to Monday 09:00
        ("0 3 13 * 5", timedelta(days=7)),  # every Friday, and the 13th
        ("0 3 1 * *", timedelta(days=31)),
        ("0 3 31 * *", timedelta(days=61)),  # 31 May to 31 July
        ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
    ],
)
def test_longest_gap(text: str, gap: timedelta) -> None:
    assert CrontabTrigger(text, UTC).longest_gap(date(2026, 1, 1)) == gap


def test_longest_gap_includes_the_year_a_line_skips() -> None:
    # Mondays in February, looked at from March: the gap from the last Monday of February 2027
    # (the 22nd) to the first of February 2028 (the 7th) is found.
    assert CrontabTrigger("0 0 * 2 1", UTC).longest_gap(date(2026, 3, 1)) == timedelta(days=350)


def test_stale_after_default_uses_the_longest_gap() -> None:
    # Before: the gap after the next fire, which for a weekday line depends on the day asked.
    assert parse_schedule("0 3 * * 1-5").period() == timedelta(days=3)
    assert parse_schedule("0 3 13 * 5").period() == timedelta(days=7)
