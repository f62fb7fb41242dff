"""argv builders: lists, never shell strings; filters identical across transfer, listing, check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqtt_backup.config.models import JobConfig, RcloneConfig
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
CONN = ["--config", "/etc/rclone.conf", "--fast-list"]


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
        commands.lsjson_command(RCLONE, JOB, CONN),
        commands.check_command(RCLONE, JOB, reports, CONN, verify="checksum"),
        commands.hashsum_command(RCLONE, JOB, CONN, "md5"),
        commands.checksum_command(
            RCLONE, JOB, reports, CONN, hash_type="md5", sums=tmp_path / "s"
        ),
    ):
        found = [argv[i : i + 2] for i, a in enumerate(argv) if a == "--filter"]
        assert sum(found, []) == FILTERS


def test_sealed_calls_take_only_the_connection_flags(tmp_path: Path) -> None:
    rclone = RCLONE.model_copy(update={"extra_args": ["--include", "*.jpg", "--size-only"]})
    reports = commands.CheckReports(*(tmp_path / n for n in "abcd"))
    rules = tmp_path / "r"
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for argv in (
        commands.lsjson_command(rclone, JOB, CONN),
        commands.check_command(rclone, JOB, reports, CONN, verify="checksum"),
        commands.delete_command(rclone, "/s", rules, CONN, not_modified_after=moment),
        commands.planned_listing_command(rclone, "/s", rules, CONN),
        commands.repair_command(rclone, JOB, rules, CONN),
        commands.rmdirs_command(rclone, JOB, CONN),
        commands.touch_command(rclone, "/d/p", CONN),
        commands.stat_command(rclone, "/d/p", CONN),
        commands.deletefile_command(rclone, "/d/p", CONN),
        commands.hashsum_command(rclone, JOB, CONN, "md5"),
        commands.checksum_command(rclone, JOB, reports, CONN, hash_type="md5", sums=rules),
    ):
        assert "--include" not in argv and "--size-only" not in argv
        assert " ".join(CONN) in " ".join(argv)
    assert "--include" in commands.transfer_command(rclone, JOB)


def test_probe_rule_comes_before_the_job_filters() -> None:
    argv = commands.lsjson_command(RCLONE, JOB, CONN, also=".probe-{1}")
    first = argv.index("--filter")
    assert argv[first : first + 4] == ["--filter", "+ .probe-\\{1\\}", "--filter", "- *.tmp"]


def test_repair_cannot_skip_a_file() -> None:
    argv = commands.repair_command(RCLONE, JOB, Path("/w/list"), CONN)
    assert argv[1] == "copy" and "--ignore-times" in argv
    assert argv[argv.index("--files-from-raw") + 1] == "/w/list"
    assert "--filter" not in argv


def test_child_paths() -> None:
    assert commands.child("nas:", "p") == "nas:p"
    assert commands.child("nas:dir", "p") == "nas:dir/p"
    assert commands.child("/d/", "p") == "/d/p"
    assert commands.child(":sftp,host=x:", "p") == ":sftp,host=x:p"


def test_check_modes(tmp_path: Path) -> None:
    reports = commands.CheckReports(*(tmp_path / n for n in ("m", "d", "o", "e")))
    checksum = commands.check_command(RCLONE, JOB, reports, CONN, verify="checksum")
    assert "--one-way" in checksum
    assert "--size-only" not in checksum and "--download" not in checksum
    assert "--size-only" in commands.check_command(RCLONE, JOB, reports, CONN, verify="size")
    assert "--download" in commands.check_command(RCLONE, JOB, reports, CONN, verify="download")
    some = commands.check_command(
        RCLONE, JOB, reports, CONN, verify="checksum", files_from=tmp_path / "list"
    )
    assert some[some.index("--files-from-raw") + 1] == str(tmp_path / "list")
    assert "--filter" not in some
    for flag, name in (("--match", "m"), ("--differ", "d"), ("--missing-on-dst", "o")):
        assert checksum[checksum.index(flag) + 1] == str(tmp_path / name)
    assert checksum[checksum.index("--error") + 1] == str(tmp_path / "e")


def test_lsjson_lists_files_of_the_source() -> None:
    argv = commands.lsjson_command(RCLONE, JOB, CONN)
    assert argv[1] == "lsjson" and "--recursive" in argv and "--files-only" in argv
    assert tail(argv, 2) == ["--", "/srv/-photos"]


def test_delete_has_age_guard_and_rules(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 29, 5, 4, 3, 123456, tzinfo=UTC)
    argv = commands.delete_command(
        RCLONE, "/srv/x", tmp_path / "r", CONN, not_modified_after=moment
    )
    assert argv[1] == "delete"
    assert argv[argv.index("--min-age") + 1] == "2026-11-29T05:04:03.123456Z"
    assert argv[argv.index("--filter-from") + 1] == str(tmp_path / "r")
    assert tail(argv, 2) == ["--", "/srv/x"]


def test_features() -> None:
    assert commands.features_command(RCLONE, "r:", CONN)[1:3] == ["backend", "features"]


def test_hashsum_hashes_the_source() -> None:
    argv = commands.hashsum_command(RCLONE, JOB, CONN, "sha1")
    assert argv[1] == "hashsum"
    assert tail(argv, 3) == ["--", "sha1", "/srv/-photos"]


def test_checksum_hashes_the_destination_against_the_sum_list(tmp_path: Path) -> None:
    reports = commands.CheckReports(*(tmp_path / n for n in ("m", "d", "o", "e")))
    argv = commands.checksum_command(
        RCLONE, JOB, reports, CONN, hash_type="md5", sums=tmp_path / "sums"
    )
    assert argv[1] == "checksum" and "--one-way" in argv and "--download" not in argv
    # The destination is hashed while it is listed: stats feed the stall watchdog.
    assert "--stats" in argv
    for flag, name in (("--match", "m"), ("--differ", "d"), ("--missing-on-dst", "o")):
        assert argv[argv.index(flag) + 1] == str(tmp_path / name)
    assert argv[argv.index("--error") + 1] == str(tmp_path / "e")
    assert tail(argv, 4) == ["--", "md5", str(tmp_path / "sums"), JOB.destination]


LOCAL = JobConfig(source="/srv/photos", destination="/mnt/backup/photos")


def test_a_local_copy_gets_more_parallelism_than_rclones_default() -> None:
    argv = commands.transfer_command(RcloneConfig(), LOCAL, environ={})
    flags = argv[: argv.index("--")]
    assert flags[flags.index("--transfers") + 1] == "8"
    assert flags[flags.index("--checkers") + 1] == "16"


def test_a_remote_on_either_side_keeps_rclones_defaults() -> None:
    for job in (
        LOCAL.model_copy(update={"destination": "nas:backup"}),
        LOCAL.model_copy(update={"source": ":sftp,host=x:photos"}),
    ):
        argv = commands.transfer_command(RcloneConfig(), job, environ={})
        assert "--transfers" not in argv and "--checkers" not in argv


def test_the_users_parallelism_wins() -> None:
    job = LOCAL.model_copy(update={"extra_args": ["--transfers=2"]})
    argv = commands.transfer_command(RcloneConfig(), job, environ={})
    assert "--transfers" not in argv and "--transfers=2" in argv
    assert "--checkers" in argv
    rclone = RcloneConfig(extra_args=["--checkers", "4"])
    argv = commands.transfer_command(rclone, LOCAL, environ={})
    assert argv.count("--checkers") == 1 and argv[argv.index("--checkers") + 1] == "4"
    # rclone reads RCLONE_TRANSFERS only when the flag is not given: never shadow it
    argv = commands.transfer_command(RcloneConfig(), LOCAL, environ={"RCLONE_TRANSFERS": "1"})
    assert "--transfers" not in argv and "--checkers" in argv
