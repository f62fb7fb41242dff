"""rclone stderr lines of 1.60 and 1.75, as captured, parsed into Progress and LogLine."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_backup.engine.events import Progress
from mqtt_backup.engine.stats import LogLine, parse_line

DATA = Path(__file__).parent.parent / "data"


def sample_lines(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("version", ["160", "175"])
def test_stats_lines_become_progress(version: str) -> None:
    parsed = [
        parse_line(line) for line in sample_lines(f"rclone{version}-copy-json-stats-notice.txt")
    ]
    progress = [p for p in parsed if isinstance(p, Progress)]
    assert progress, "every sample has stats lines"
    final = progress[-1]
    assert final.bytes == final.total_bytes == 1073741824
    assert final.files == final.total_files == 8
    assert final.percent == 100.0
    assert progress[0].percent < 100.0


def test_eta_null_is_none() -> None:
    first = parse_line(sample_lines("rclone160-copy-json-stats-notice.txt")[0])
    assert isinstance(first, Progress)
    assert first.eta is None


def test_160_notice_logged_as_warning_is_notice() -> None:
    line = '{"level":"warning","msg":"2 matching files","object":"Local file system at dst"}'
    parsed = parse_line(line)
    assert parsed == LogLine("notice", "2 matching files", "Local file system at dst")


def test_160_final_failure_is_plain_text() -> None:
    lines = sample_lines("rclone160-copy-json-nothing-and-error.txt")
    plain = [parse_line(line) for line in lines if not line.startswith("{")]
    failure = plain[0]
    assert isinstance(failure, LogLine)
    assert failure.message == "Failed to copy: directory not found"
    assert failure.level == "critical"
    assert failure.json is False


def test_175_failure_is_json_notice() -> None:
    lines = sample_lines("rclone175-copy-json-nothing-and-error.txt")
    parsed = [parse_line(line) for line in lines]
    messages = [p.message for p in parsed if isinstance(p, LogLine)]
    assert "Failed to copy: directory not found" in messages
    errors = [p for p in parsed if isinstance(p, LogLine) and p.level == "error"]
    assert errors and errors[0].object is not None


def test_stats_with_last_error_and_missing_fields() -> None:
    parsed = parse_line('{"level":"info","stats":{"bytes":5,"errors":1,"lastError":"boom"}}')
    assert parsed == Progress(bytes=5, errors=1, last_error="boom")


@pytest.mark.parametrize("version", ["160", "175"])
def test_deleted_lines_name_the_object(version: str) -> None:
    parsed = [parse_line(line) for line in sample_lines(f"rclone{version}-delete-move-json.txt")]
    deleted = [p for p in parsed if isinstance(p, LogLine) and p.message == "Deleted"]
    assert deleted and all(p.object for p in deleted)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", None),
        ("   ", None),
        ("exit=3", LogLine("notice", "exit=3", json=False)),
        ("{not json", LogLine("notice", "{not json", json=False)),
        (
            "2026/11/29 05:04:17 ERROR : b.txt: md5 differ",
            LogLine("error", "b.txt: md5 differ", json=False),
        ),
        ('["a list"]', LogLine("notice", '["a list"]', json=False)),
    ],
)
def test_odd_lines(line: str, expected: LogLine | None) -> None:
    assert parse_line(line) == expected


def test_a_refused_command_line_names_the_flag() -> None:
    error = parse_line("Error: unknown flag: --bogus-flag")
    assert isinstance(error, LogLine)
    assert (error.level, error.message) == ("error", "unknown flag: --bogus-flag")
    fatal = parse_line("2026/12/01 22:53:38 NOTICE: Fatal error: unknown flag: --bogus-flag")
    assert isinstance(fatal, LogLine)
    assert (fatal.level, fatal.message) == ("critical", "unknown flag: --bogus-flag")
