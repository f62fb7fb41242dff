"""argv builders: lists, never shell strings; filters identical across transfer, listing, check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqtt_backup.config import JobConfig, RcloneConfig
from mqtt_backup.engine import commands

RCLONE = RcloneConfig(
    binary="/opt/rclone",
    config_file=Path("/etc/rclone.conf"),
    extra_args=["--fast-list"],
    stats_interval=timedelta(milliseconds=500),
)
JOB = JobConfig(
    source="/srv/-photos",
    destination=":sftp,host=x,pass=SECRET:backup",
    filters=["- *.tmp", "+ **"],
    extra_args=["--transfers", "8"],
)
FILTERS = ["--filter", "- *.tmp", "--filter", "+ **"]


def tail(argv: list[str], n: int) -> list[str]:
    return argv[-n:]


def test_transfer() -> None:
    argv = commands.transfer_command(RCLONE, JOB)
    assert argv[:2] == ["/opt/rclone", "copy"]
    assert tail(argv, 3) == ["--", "/srv/-photos", ":sftp,host=x,pass=SECRET:backup"]
    joined = " ".join(argv)
    assert "--use-json-log --stats 500ms --stats-log-level NOTICE" in joined
    assert "--config /etc/rclone.conf --fast-list" in joined
    assert "--transfers 8" in joined
    assert "--dry-run" not in argv
    assert "--dry-run" in commands.transfer_command(RCLONE, JOB, dry_run=True)


def test_operations() -> None:
    for operation in ("sync", "move"):
        job = JOB.model_copy(update={"operation": operation})
        assert commands.transfer_command(RCLONE, job)[1] == operation


def test_filters_agree_everywhere(tmp_path: Path) -> None:
    reports = commands.CheckReports(*(tmp_path / n for n in "abcd"))
    for argv in (
        commands.transfer_command(RCLONE, JOB),
        commands.lsjson_command(RCLONE, JOB),
        commands.check_command(RCLONE, JOB, reports, verify="checksum"),
    ):
        found = [argv[i : i + 2] for i, a in enumerate(argv) if a == "--filter"]
        assert sum(found, []) == FILTERS


def test_check_modes(tmp_path: Path) -> None:
    reports = commands.CheckReports(*(tmp_path / n for n in ("m", "d", "o", "e")))
    checksum = commands.check_command(RCLONE, JOB, reports, verify="checksum")
    assert "--one-way" in checksum
    assert "--size-only" not in checksum and "--download" not in checksum
    assert "--size-only" in commands.check_command(RCLONE, JOB, reports, verify="size")
    assert "--download" in commands.check_command(RCLONE, JOB, reports, verify="download")
    for flag, name in (("--match", "m"), ("--differ", "d"), ("--missing-on-dst", "o")):
        assert checksum[checksum.index(flag) + 1] == str(tmp_path / name)
    assert checksum[checksum.index("--error") + 1] == str(tmp_path / "e")


def test_lsjson_lists_files_of_the_source() -> None:
    argv = commands.lsjson_command(RCLONE, JOB)
    assert argv[1] == "lsjson" and "--recursive" in argv and "--files-only" in argv
    assert tail(argv, 2) == ["--", "/srv/-photos"]


def test_delete_has_age_guard_and_rules(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 29, 5, 4, 3, 123456, tzinfo=UTC)
    argv = commands.delete_command(RCLONE, "/srv/x", tmp_path / "r", not_modified_after=moment)
    assert argv[1] == "delete"
    assert argv[argv.index("--min-age") + 1] == "2026-11-29T05:04:03.123456Z"
    assert argv[argv.index("--filter-from") + 1] == str(tmp_path / "r")
    assert tail(argv, 2) == ["--", "/srv/x"]


def test_version_and_features() -> None:
    assert commands.version_command("rc") == ["rc", "version"]
    assert commands.features_command(RCLONE, "r:")[1:3] == ["backend", "features"]
