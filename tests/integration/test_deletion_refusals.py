"""Configurations verify-then-delete must refuse, each set up so that going on would lose a file.

Refusing means a config error when the config is loaded, or a failed run with a sentence
saying why. Whichever it is, the disk is checked strictly: no file that was not proven
stored elsewhere is gone, and no source file changed.
"""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path

import pytest
import yaml

from mqtt_backup.config_loader import parse_config
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.engine.runner import execute
from mqtt_backup.errors import ConfigError
from tests.integration.rclone_servers import wrap_rclone, write_tree
from tests.property.oracle import check, snapshot

OLD = 1_600_000_000  # 2020: old enough for any min_age


def attempt(
    tmp_path: Path,
    binary: str,
    source: str,
    destination: str,
    *,
    extra_args: list[str] | None = None,
    verify: str = "checksum",
) -> RunOutcome | ConfigError:
    """Load a verify-then-delete job the way a config file would, then run it once."""
    config = {
        "instance": "test",
        "state_dir": str(tmp_path / "state"),
        "rclone": {"binary": binary, "extra_args": extra_args or []},
        "jobs": {
            "t": {
                "source": source,
                "destination": destination,
                "deletion": {"mode": "verify_then_delete", "verify": verify},
            }
        },
    }
    try:
        loaded = parse_config(yaml.safe_dump(config, allow_unicode=True))
    except ConfigError as exc:
        return exc
    return execute(
        "t",
        loaded.jobs["t"],
        loaded.rclone,
        on_event=lambda _event: None,
        cancel=threading.Event(),
        work_dir=tmp_path / "work",
    )


def assert_refused(result: RunOutcome | ConfigError) -> None:
    if isinstance(result, ConfigError):
        assert result.errors and all(e.strip() for e in result.errors)
        return
    assert result.status == "failed", f"not refused: {result!r}"
    assert result.error and len(result.error.split()) >= 3, f"no reason given: {result!r}"


# ---- the destination is the source under another name, or inside it ----

FILES = {"a.jpg": b"photo a", "sub/b c.jpg": b"photo b", "-dash.txt": b"text"}

SAME_PLACE = {
    "dot": lambda t: f"{t}/./data",
    "double-slash": lambda t: f"{t}//data",
    "dotdot": lambda t: f"{t}/data/../data",
    "trailing-dot": lambda t: f"{t}/data/.",
    "relative": lambda t: os.path.relpath(t / "data"),
    "symlink": lambda t: f"{t}/link-to-data",
    "local-backend": lambda t: f":local:{t}/data",
}


@pytest.mark.parametrize("spelling", list(SAME_PLACE))
def test_the_source_under_another_name_is_refused(
    tmp_path: Path, rclone_binary: str, spelling: str
) -> None:
    source = tmp_path / "data"
    write_tree(source, FILES, mtime=OLD)
    (tmp_path / "link-to-data").symlink_to(source)
    result = attempt(tmp_path, rclone_binary, str(source), SAME_PLACE[spelling](tmp_path))
    assert snapshot(source) == FILES
    assert_refused(result)


def test_a_destination_inside_the_source_is_refused(tmp_path: Path, rclone_binary: str) -> None:
    source = tmp_path / "data"
    write_tree(source, FILES, mtime=OLD)
    result = attempt(tmp_path, rclone_binary, str(source), f"{source}/backup")
    after = snapshot(source)
    # Copies inside the source are no copies elsewhere: every file must still be in place.
    assert {path: after.get(path) for path in FILES} == FILES
    assert_refused(result)


# ---- flags and RCLONE_* variables that would reach the check or the delete ----


def corrupted_copy_setup(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """good.jpg is copied and verified; at the destination bad.jpg already has a copy of the
    same size and time but other bytes, which ``rclone copy`` skips and the check rejects."""
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"good.jpg": b"good photo", "bad.jpg": b"original photo", "notes.txt": b"notes"}
    write_tree(source, files, mtime=OLD)
    write_tree(destination, {"bad.jpg": b"CORRUPTED phot"}, mtime=OLD)
    return source, destination, files


def assert_nothing_unverified_deleted(
    source: Path, destination: Path, files: dict[str, bytes]
) -> None:
    after = snapshot(source)
    assert after.get("bad.jpg") == files["bad.jpg"], "the unverified bad.jpg was deleted"
    found = check(
        known=files,
        source_after=after,
        destination_after=snapshot(destination),
        destination_before={},
        source_real=source,
        destination_real=destination,
    )
    assert found.all() == []


FLAGS = {
    "include": ["--include", "*.jpg"],
    "filter": ["--filter", "+ *.jpg"],
    "size-only": ["--size-only"],
}


@pytest.mark.parametrize("flag", list(FLAGS))
def test_a_global_flag_that_changes_the_check_or_the_delete_is_refused(
    tmp_path: Path, rclone_binary: str, flag: str
) -> None:
    source, destination, files = corrupted_copy_setup(tmp_path)
    result = attempt(tmp_path, rclone_binary, str(source), str(destination), extra_args=FLAGS[flag])
    assert_nothing_unverified_deleted(source, destination, files)
    assert_refused(result)


ENVIRONMENT = {
    "RCLONE_INCLUDE": "*.jpg",
    "RCLONE_FILTER": "+ *.jpg",
    "RCLONE_SIZE_ONLY": "true",
}


@pytest.mark.parametrize("variable", list(ENVIRONMENT))
def test_an_rclone_variable_that_changes_the_check_or_the_delete_is_refused(
    tmp_path: Path, rclone_binary: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, destination, files = corrupted_copy_setup(tmp_path)
    monkeypatch.setenv(variable, ENVIRONMENT[variable])
    result = attempt(tmp_path, rclone_binary, str(source), str(destination))
    assert_nothing_unverified_deleted(source, destination, files)
    assert_refused(result)


# ---- a check that could not run ----


def _destination_gone(destination: Path, aside: Path) -> str:
    return f"mv {shlex.quote(str(destination))} {shlex.quote(str(aside))}"


def _destination_unreadable(destination: Path, aside: Path) -> str:
    if os.geteuid() != 0:
        return f"chmod 000 {shlex.quote(str(destination))}"
    # root reads any folder: a plain file where the folder was cannot be read as one.
    return f"{_destination_gone(destination, aside)} && echo x > {shlex.quote(str(destination))}"


BROKEN = {"missing": _destination_gone, "unreadable": _destination_unreadable}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_check_that_could_not_run_is_refused(
    tmp_path: Path, rclone_binary: str, broken: str
) -> None:
    source, destination = tmp_path / "data", tmp_path / "backup"
    write_tree(source, FILES, mtime=OLD)
    script = BROKEN[broken](destination, tmp_path / "aside")
    binary = wrap_rclone(tmp_path, rclone_binary, "check", script, after=False)
    try:
        result = attempt(tmp_path, binary, str(source), str(destination))
    finally:
        if destination.exists():
            destination.chmod(0o755)
    assert snapshot(source) == FILES
    assert_refused(result)
    assert isinstance(result, RunOutcome)  # nothing in the config was wrong


# ---- more ways to lose a file, found by tests/property/test_deletion_oracle.py ----


def test_a_flag_that_makes_the_delete_ignore_case_is_refused(
    tmp_path: Path, rclone_binary: str
) -> None:
    # a.jpg is verified; A.jpg is not (its copy is corrupted). Matched without case, the
    # delete's exact rule for a.jpg also takes A.jpg.
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"a.jpg": b"verified", "A.jpg": b"original"}
    write_tree(source, files, mtime=OLD)
    write_tree(destination, {"A.jpg": b"CORRUPT!"}, mtime=OLD)
    result = attempt(
        tmp_path, rclone_binary, str(source), str(destination), extra_args=["--ignore-case"]
    )
    assert snapshot(source).get("A.jpg") == b"original", "the unverified A.jpg was deleted"
    assert_refused(result)


def test_an_rclone_variable_that_makes_the_delete_ignore_case_is_refused(
    tmp_path: Path, rclone_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"a.jpg": b"verified", "A.jpg": b"original"}
    write_tree(source, files, mtime=OLD)
    write_tree(destination, {"A.jpg": b"CORRUPT!"}, mtime=OLD)
    monkeypatch.setenv("RCLONE_IGNORE_CASE", "true")
    result = attempt(tmp_path, rclone_binary, str(source), str(destination))
    assert snapshot(source).get("A.jpg") == b"original", "the unverified A.jpg was deleted"
    assert_refused(result)


def test_a_flag_that_overrides_the_age_guard_of_the_delete_is_refused(
    tmp_path: Path, rclone_binary: str
) -> None:
    # hot.txt is written to after it was verified, right before the delete: only the
    # delete's own --min-age keeps it, and a later --min-age on the command line wins.
    source, destination = tmp_path / "data", tmp_path / "backup"
    write_tree(source, {"stable.txt": b"s", "hot.txt": b"h"}, mtime=OLD)
    target = shlex.quote(str(source / "hot.txt"))
    binary = wrap_rclone(tmp_path, rclone_binary, "delete", f"echo more >> {target}", after=False)
    result = attempt(
        tmp_path, binary, str(source), str(destination), extra_args=["--min-age", "0s"]
    )
    assert snapshot(source).get("hot.txt") == b"hmore\n", "hot.txt was deleted after it changed"
    assert_refused(result)


def test_a_destination_that_holds_the_source_is_refused(tmp_path: Path, rclone_binary: str) -> None:
    # Copying data/ into its own parent writes data/data/x.jpg over data/x.jpg.
    source = tmp_path / "data"
    files = {"x.jpg": b"the top one", "data/x.jpg": b"the nested one"}
    write_tree(source, files, mtime=OLD)
    result = attempt(tmp_path, rclone_binary, str(source), str(tmp_path))
    after = snapshot(source)
    assert {path: after.get(path) for path in files} == files
    assert_refused(result)
