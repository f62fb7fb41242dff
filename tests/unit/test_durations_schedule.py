from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from mqtt_backup.config.durations import format_duration, parse_duration
from mqtt_backup.scheduling.triggers import parse_schedule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("6h", 21600),
        ("7d", 604800),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("0s", 0),
        (90, 90),
        ("2w", 1209600),
        (" 10 M ", 600),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "5", "5x", "-5s", "s5", True, -1])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [0, 1, 59, 61, 3600, 86400 + 61, 0.25])
def test_format_round_trips(seconds: float) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_interval_schedule() -> None:
    schedule = parse_schedule("every   90s")
    assert schedule.kind == "interval"
    assert schedule.text == "every 1m30s"
    assert schedule.period() == timedelta(seconds=90)


def test_cron_schedule_fires_when_written() -> None:
    schedule = parse_schedule("0 3 * * *")
    trigger = schedule.trigger(UTC)
    now = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert schedule.period() == timedelta(days=1)


def test_cron_day_of_week_is_crontab_style() -> None:
    # crontab counts Sunday as 0; APScheduler's own CronTrigger counts Monday as 0.
    trigger = parse_schedule("0 3 * * 0").trigger(UTC)
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 25, tzinfo=UTC))
    assert fire is not None
    assert fire.strftime("%A") == "Sunday"


@pytest.mark.parametrize("text", ["0 3 * *", "every", "every 5x", "61 * * * *", "@daily"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(text)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("0,6", {"Saturday", "Sunday"}),
        ("7", {"Sunday"}),
        ("5-7", {"Friday", "Saturday", "Sunday"}),
        ("*/2", {"Sunday", "Tuesday", "Thursday", "Saturday"}),
        ("mon-fri", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("*", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}),
    ],
)
def test_cron_weekdays_follow_crontab(field: str, days: set[str]) -> None:
    trigger = parse_schedule(f"0 3 * * {field}").trigger(UTC)
    fire, seen = None, set()
    start = datetime(2026, 11, 23, tzinfo=UTC)
    for _ in range(len(days)):
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1) if fire else start)
        assert fire is not None
        seen.add(fire.strftime("%A"))
    assert seen == days


@pytest.mark.parametrize("text", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_cron_that_can_never_fire_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="never runs"):
        parse_schedule(text)


@pytest.mark.parametrize("text", ["0 0 29 2 *", "0 0 31 2 1", "0 0 31 * *"])
def test_rare_crons_are_accepted(text: str) -> None:
    # February 29 comes every 4 years; "31 2 1" is every Monday in February (either day field).
    assert parse_schedule(text).kind == "cron"


@pytest.mark.parametrize("text", ["every 367d", "every 5000000d", "every 99999999999999w"])
def test_absurd_intervals_are_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(ValueError, match="at most 'every 366d'"):
        parse_schedule(text)


def test_the_longest_interval_is_accepted() -> None:
    assert parse_schedule("every 366d").period() == timedelta(days=366)


def test_schedule_errors_name_the_key() -> None:
    from mqtt_backup.config.loader import parse_config
    from mqtt_backup.errors import ConfigError

    text = (
        "jobs:\n"
        "  a: {source: /s, destination: /d, schedule: '0 0 31 2 *'}\n"
        "  b: {source: /s, destination: /d, schedule: every 5000000d}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.errors == [
        "jobs.a.schedule: '0 0 31 2 *' never runs: no month has the day it names "
        "(check the day and month fields) (line 2)",
        "jobs.b.schedule: an interval schedule can be at most 'every 366d'; for rarer runs "
        "write a cron line, like '0 3 1 1 *' for once a year (line 3)",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5000000d", "'5000000d' is too long: a duration can be at most 36500d (100 years)"),
        ("36501d", "'36501d' is too long"),
        ("99999999999999999999999w", "is too long"),
        (1e400, "inf seconds is too long"),
        (float("nan"), "is not a duration"),
        (36500 * 86400 + 1, "3153600001 seconds is too long"),
        (timedelta(days=10**6), "1000000d is too long"),
        ("9" * 400 + "s", "is not a duration"),
    ],
)
def test_durations_are_bounded_and_never_overflow(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)  # type: ignore[arg-type]


def test_the_longest_duration_still_fits_a_date() -> None:
    longest = parse_duration("36500d")
    assert longest == timedelta(days=36500)
    now = datetime.now(UTC)
    assert now - longest < now < now + 2 * longest
