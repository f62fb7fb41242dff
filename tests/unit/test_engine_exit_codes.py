"""rclone exit codes on both sides of 1.69, where codes 1 and 2 swapped meaning."""

from __future__ import annotations

import pytest

from mqtt_backup.engine.exit_codes import describe_exit

OLD = (1, 68, 2)
NEW = (1, 75, 2)


def test_usage_error_moved_from_1_to_2() -> None:
    assert "usage" in describe_exit(1, OLD).sentence
    assert "usage" in describe_exit(2, NEW).sentence
    assert not describe_exit(1, OLD).retryable
    assert not describe_exit(2, NEW).retryable


def test_uncategorised_moved_from_2_to_1() -> None:
    assert describe_exit(2, OLD).sentence == "rclone reported an error"
    assert describe_exit(1, NEW).sentence == "rclone reported an error"
    assert describe_exit(2, OLD).retryable and describe_exit(1, NEW).retryable


def test_boundary_version_is_new_meaning() -> None:
    assert "usage" in describe_exit(2, (1, 69, 0)).sentence


@pytest.mark.parametrize(
    ("code", "retryable", "words"),
    [
        (3, False, "directory not found"),
        (4, False, "file not found"),
        (5, True, "temporary"),
        (6, False, "retrying will not fix"),
        (7, False, "fatal"),
        (10, True, "max-duration"),
        (130, True, "SIGINT"),
        (143, True, "SIGTERM"),
        (-9, True, "SIGKILL"),
    ],
)
def test_codes(code: int, retryable: bool, words: str) -> None:
    for version in (OLD, NEW):
        meaning = describe_exit(code, version)
        assert meaning.retryable is retryable
        assert words in meaning.sentence


def test_kinds_follow_the_meaning_not_the_number() -> None:
    from mqtt_backup.engine.exit_codes import ExitKind

    assert describe_exit(1, OLD).kind is ExitKind.USAGE
    assert describe_exit(2, NEW).kind is ExitKind.USAGE
    assert describe_exit(1, NEW).kind is ExitKind.OTHER
    assert describe_exit(3, NEW).kind is ExitKind.DIRECTORY_NOT_FOUND
    assert describe_exit(143, NEW).kind is ExitKind.KILLED
    assert describe_exit(99, NEW).kind is ExitKind.UNKNOWN
