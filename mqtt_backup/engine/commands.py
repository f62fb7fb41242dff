"""Pure argv builders for every rclone call the engine makes.

Each returns a ``list[str]`` for ``subprocess`` (never a shell string). Flags come
first and the paths after ``--``, so a path that starts with ``-`` is never read
as a flag. The job's filter rules go to the transfer, the listings, the hashsum and
the comparisons alike, so all of them see the same set of files.

Only the transfer gets the user's flags as written. Every call that decides what is
proven or deleted takes ``conn``: the config file plus the connection settings that
engine/sealed.py lets through (docs/design.md, "Deletion safety").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.locations import local_path
from mqtt_backup.engine.verify import glob_escape

Verify = Literal["checksum", "size", "download"]


@dataclass(frozen=True, slots=True)
class CheckReports:
    """Files ``rclone check`` writes its verdicts to, one path per line."""

    match: Path
    differ: Path
    missing_on_dst: Path
    error: Path


def config_flags(rclone: RcloneConfig) -> list[str]:
    """``--config FILE`` when the user named an rclone config file."""
    return ["--config", str(rclone.config_file)] if rclone.config_file is not None else []


def common_flags(rclone: RcloneConfig) -> list[str]:
    """The transfer's flags: the config file and the user's extra flags, all of them."""
    return config_flags(rclone) + list(rclone.extra_args)


def filter_flags(job: JobConfig) -> list[str]:
    """The job's filter rules, in order, one ``--filter`` each."""
    flags: list[str] = []
    for rule in job.filters:
        flags += ["--filter", rule]
    return flags


def _stats(rclone: RcloneConfig) -> list[str]:
    """JSON log lines and a stats line every ``stats_interval`` on stderr: the progress the
    state shows, and what lets the stall watchdog see a call move on."""
    every = f"{int(rclone.stats_interval.total_seconds() * 1000)}ms"
    return ["--use-json-log", "--stats", every, "--stats-log-level", "NOTICE"]


def _report_flags(reports: CheckReports) -> list[str]:
    """Where ``check`` and ``checksum`` write their verdicts, one file per kind."""
    return [
        "--match",
        str(reports.match),
        "--differ",
        str(reports.differ),
        "--missing-on-dst",
        str(reports.missing_on_dst),
        "--error",
        str(reports.error),
    ]


# Parallelism of a transfer between two local folders (rclone's own defaults: 4 and 8).
# Many small files copy faster with more at once on a busy machine, and no slower when the
# disk sets the pace (`python -m bench --only flags`, README "Performance"); each transfer
# may buffer 16 MiB of a big file (--buffer-size), so 8 bounds that at 128 MiB. Remotes
# keep rclone's defaults, which its backends tune and which stay within cloud services'
# rate limits (more was slower to sftp on loopback).
LOCAL_PARALLELISM = {"--transfers": 8, "--checkers": 16}


def _given(flag: str, args: Iterable[str], environ: Mapping[str, str]) -> bool:
    """Whether the user set ``flag``: on a command line, or as rclone's RCLONE_* variable."""
    if any(a == flag or a.startswith(f"{flag}=") for a in args):
        return True
    return f"RCLONE_{flag.removeprefix('--').replace('-', '_').upper()}" in environ


def parallelism_flags(
    rclone: RcloneConfig, job: JobConfig, environ: Mapping[str, str]
) -> list[str]:
    """mqtt-backup's --transfers and --checkers for a local-to-local transfer, unless the
    user chose them (extra_args of rclone or of the job, or RCLONE_TRANSFERS and so on)."""
    if local_path(job.source) is None or local_path(job.destination) is None:
        return []
    given = [*rclone.extra_args, *job.extra_args]
    flags: list[str] = []
    for flag, value in LOCAL_PARALLELISM.items():
        if not _given(flag, given, environ):
            flags += [flag, str(value)]
    return flags


def transfer_command(
    rclone: RcloneConfig,
    job: JobConfig,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``rclone copy|sync|move SRC DST`` with JSON stats on stderr.

    ``environ``: the environment rclone will run with (default: this process's), whose
    RCLONE_* variables the default flags must not override.
    """
    argv = [
        rclone.binary,
        job.operation,
        *_stats(rclone),
        *parallelism_flags(rclone, job, os.environ if environ is None else environ),
        *common_flags(rclone),
        *filter_flags(job),
        *job.extra_args,
    ]
    if dry_run:
        argv.append("--dry-run")
    return [*argv, "--", job.source, job.destination]


def lsjson_command(
    rclone: RcloneConfig, job: JobConfig, conn: list[str], *, also: str | None = None
) -> list[str]:
    """Recursive listing of the source's files (size and modtime), as JSON on stdout.

    ``also`` names a file to list at any depth whatever the job's filters say (a probe).
    """
    first = ["--filter", f"+ {glob_escape(also)}"] if also else []
    return _lsjson(rclone, job.source, conn, [*first, *filter_flags(job)])


def planned_listing_command(
    rclone: RcloneConfig, source: str, rules: Path, conn: list[str]
) -> list[str]:
    """The source files that an exact-path filter file names, with size and modtime."""
    return _lsjson(rclone, source, conn, ["--filter-from", str(rules)])


def stat_command(rclone: RcloneConfig, path: str, conn: list[str]) -> list[str]:
    """One file's listing; rclone exits 3 (directory not found) when there is no such file."""
    return [rclone.binary, "lsjson", "--files-only", "--no-mimetype", *conn, "--", path]


def _lsjson(rclone: RcloneConfig, source: str, conn: list[str], selection: list[str]) -> list[str]:
    return [
        rclone.binary,
        "lsjson",
        "--recursive",
        "--files-only",
        "--no-mimetype",
        "--use-json-log",
        *conn,
        *selection,
        "--",
        source,
    ]


def touch_command(rclone: RcloneConfig, path: str, conn: list[str]) -> list[str]:
    """Create an empty file (a probe)."""
    return [rclone.binary, "touch", "--use-json-log", *conn, "--", path]


def deletefile_command(rclone: RcloneConfig, path: str, conn: list[str]) -> list[str]:
    """Remove one file (a probe)."""
    return [rclone.binary, "deletefile", "--use-json-log", *conn, "--", path]


def child(remote: str, name: str) -> str:
    """``name`` inside the folder ``remote`` names, in rclone's path syntax."""
    return remote + name if remote.endswith((":", "/")) else f"{remote}/{name}"


def check_command(
    rclone: RcloneConfig,
    job: JobConfig,
    reports: CheckReports,
    conn: list[str],
    *,
    verify: Verify,
    files_from: Path | None = None,
) -> list[str]:
    """One-way ``rclone check`` of source against destination, verdicts written to files.

    With ``files_from`` only the files it names (one exact path per line) are checked.
    """
    mode: list[str] = {"checksum": [], "size": ["--size-only"], "download": ["--download"]}[verify]
    selection = ["--files-from-raw", str(files_from)] if files_from else filter_flags(job)
    return [
        rclone.binary,
        "check",
        "--one-way",
        *_stats(rclone),
        *mode,
        *_report_flags(reports),
        *conn,
        *selection,
        "--",
        job.source,
        job.destination,
    ]


def hashsum_command(
    rclone: RcloneConfig, job: JobConfig, conn: list[str], hash_type: str
) -> list[str]:
    """Every source file's hash of ``hash_type``, one ``<hash>  <name>`` line each on stdout.

    rclone hashes ``--checkers`` files at a time, and prints a line only for a file it
    could hash.
    """
    return [
        rclone.binary,
        "hashsum",
        *_stats(rclone),
        *conn,
        *filter_flags(job),
        "--",
        hash_type,
        job.source,
    ]


def checksum_command(
    rclone: RcloneConfig,
    job: JobConfig,
    reports: CheckReports,
    conn: list[str],
    *,
    hash_type: str,
    sums: Path,
) -> list[str]:
    """Hash the destination's files named in the sum list ``sums`` and compare, one way.

    The verdicts go to the report files as with ``rclone check``: a file of the list is
    matched, differing, missing at the destination or unreadable there. ``sums`` must be
    an absolute local path (rclone would read ``name:...`` as a remote).
    """
    return [
        rclone.binary,
        "checksum",
        "--one-way",
        *_stats(rclone),
        *_report_flags(reports),
        *conn,
        *filter_flags(job),
        "--",
        hash_type,
        str(sums),
        job.destination,
    ]


def repair_command(
    rclone: RcloneConfig, job: JobConfig, files_from: Path, conn: list[str]
) -> list[str]:
    """Copy the named files again, whatever their size and modtime say (``--ignore-times``).

    A destination file with the source's size and modtime but other bytes is one that
    ``rclone copy`` skips on every run; this copy cannot skip it.
    """
    return [
        rclone.binary,
        "copy",
        "--ignore-times",
        "--no-traverse",
        *_stats(rclone),
        *conn,
        "--files-from-raw",
        str(files_from),
        "--",
        job.source,
        job.destination,
    ]


def rclone_time(moment: datetime) -> str:
    """An absolute time as rclone's ``--min-age`` accepts it (UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def delete_command(
    rclone: RcloneConfig,
    source: str,
    rules: Path,
    conn: list[str],
    *,
    not_modified_after: datetime,
) -> list[str]:
    """Delete exactly the files named in ``rules``, skipping any modified after the cutoff.

    ``--files-from-raw`` cannot be used here: rclone refuses it together with
    ``--min-age`` and, with a files-from list, ignores modification times anyway.
    An exact-path filter file does the same selection and keeps the age guard.
    """
    # No --verbose: a JSON line per deleted file costs rclone and its reader more than the
    # deletion itself at 100,000 files; the final stats line counts the deletions instead
    # (rclone prints it only when --stats is given).
    return [
        rclone.binary,
        "delete",
        *_stats(rclone),
        "--min-age",
        rclone_time(not_modified_after),
        *conn,
        "--filter-from",
        str(rules),
        "--",
        source,
    ]


def rmdirs_command(rclone: RcloneConfig, job: JobConfig, conn: list[str]) -> list[str]:
    """Remove the source's empty folders, never the source folder itself."""
    return [
        rclone.binary,
        "rmdirs",
        "--leave-root",
        "--use-json-log",
        *conn,
        *filter_flags(job),
        "--",
        job.source,
    ]


def features_command(rclone: RcloneConfig, remote: str, conn: list[str]) -> list[str]:
    """``rclone backend features`` of one side: its hash types, as JSON on stdout."""
    return [rclone.binary, "backend", "features", *conn, "--", remote]
