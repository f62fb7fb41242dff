"""Configurations that would lose a file if verify-then-delete went on as told.

Each test is set up so that going on naively would delete a file that is not proven
stored elsewhere, and checks the disk strictly: no such file is gone, no source file
changed. And each checks that the user is told:

- a destination that is the source, lies inside it or holds it is refused: a config
  error at load, or a failed run with a sentence saying why;
- a flag or ``RCLONE_*`` variable that would widen the delete or weaken the check is
  refused at load, or kept out of every call after the transfer with a log line naming it;
- a destination the check cannot read never makes a plain success: the run fails, or
  completes with a warning.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from pathlib import Path

import pytest
import yaml

from mqtt_backup.config.loader import parse_config
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.engine.runner import execute
from mqtt_backup.errors import ConfigError
from tests.integration.rclone_servers import COMPARISONS, wrap_rclone, write_tree
from tests.property.oracle import check, snapshot

OLD = 1_600_000_000  # 2020: old enough for any min_age


def attempt(
    tmp_path: Path,
    binary: str,
    source: str,
    destination: str,
    *,
    extra_args: list[str] | None = None,
    filters: list[str] | None = None,
) -> RunOutcome | ConfigError:
    """Load a verify-then-delete job the way a config file would, then run it once."""
    job = {
        "source": source,
        "destination": destination,
        "deletion": {"mode": "verify_then_delete"},
        "filters": filters or [],
    }
    config = {
        "instance": "test",
        "state_dir": str(tmp_path / "state"),
        "rclone": {"binary": binary, "extra_args": extra_args or []},
        "jobs": {"t": job},
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


def sentence(text: str | None) -> bool:
    return text is not None and len(text.split()) >= 3


def assert_refused(result: RunOutcome | ConfigError) -> None:
    if isinstance(result, ConfigError):
        assert result.errors and all(sentence(e) for e in result.errors)
        return
    assert result.status == "failed", f"not refused: {result!r}"
    assert sentence(result.error), f"no reason given: {result!r}"


def assert_kept_out(
    result: RunOutcome | ConfigError, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused at load, or the run said that ``name`` does not reach the check and delete."""
    if isinstance(result, ConfigError):
        assert any(name in e for e in result.errors), result.errors
        return
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(name in line for line in logged), f"{name} is not named in the log: {logged}"


def assert_no_loss(source: Path, destination: Path, files: dict[str, bytes]) -> None:
    """Every source file that is gone has an identical copy at the destination."""
    found = check(
        known=files,
        source_after=snapshot(source),
        destination_after=snapshot(destination),
        destination_before={},
        source_real=source,
        destination_real=destination,
    )
    assert found.all() == []


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


def flags_and_environment(
    case: tuple[list[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Set a case's RCLONE_* variables for this test; its flags, for rclone.extra_args."""
    flags, env = case
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return flags


# ---- flags and RCLONE_* variables that would reach the check or the delete ----

WIDENING = {
    "--include": (["--include", "*.jpg"], {}),
    "--filter": (["--filter", "+ *.jpg"], {}),
    "RCLONE_INCLUDE": ([], {"RCLONE_INCLUDE": "*.jpg"}),
    "RCLONE_FILTER": ([], {"RCLONE_FILTER": "+ *.jpg"}),
}


@pytest.mark.parametrize("name", list(WIDENING))
def test_an_include_rule_does_not_widen_the_delete(
    tmp_path: Path,
    rclone_binary: str,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The job leaves deep/ out, so deep/kept.jpg is never verified. rclone matches
    # --include and --filter rules before the exact-path rules of the delete: reaching
    # the delete, *.jpg would take it too.
    caplog.set_level(logging.INFO)
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"good.jpg": b"good photo", "deep/kept.jpg": b"left out by the job"}
    write_tree(source, files, mtime=OLD)
    flags = flags_and_environment(WIDENING[name], monkeypatch)
    result = attempt(
        tmp_path,
        rclone_binary,
        str(source),
        str(destination),
        extra_args=flags,
        filters=["- /deep/**"],
    )
    assert snapshot(source).get("deep/kept.jpg") == files["deep/kept.jpg"], (
        "deep/kept.jpg, which the job leaves out, was deleted"
    )
    assert_no_loss(source, destination, files)
    assert_kept_out(result, name, caplog)


WEAKENING = {
    "--size-only": (["--size-only"], {}),
    "RCLONE_SIZE_ONLY": ([], {"RCLONE_SIZE_ONLY": "true"}),
}


@pytest.mark.parametrize("name", list(WEAKENING))
def test_a_size_only_comparison_does_not_weaken_the_check(
    tmp_path: Path,
    rclone_binary: str,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # At the destination bad.jpg already has a copy of the same size and time but other
    # bytes, which rclone copy skips: only a comparison of content sees it.
    caplog.set_level(logging.INFO)
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"good.jpg": b"good photo", "bad.jpg": b"original photo"}
    write_tree(source, files, mtime=OLD)
    write_tree(destination, {"bad.jpg": b"CORRUPTED phot"}, mtime=OLD)
    flags = flags_and_environment(WEAKENING[name], monkeypatch)
    result = attempt(tmp_path, rclone_binary, str(source), str(destination), extra_args=flags)
    # bad.jpg may go only once its copy holds the original bytes.
    assert_no_loss(source, destination, files)
    assert_kept_out(result, name, caplog)


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
def test_a_destination_the_check_cannot_read_is_no_success(
    tmp_path: Path, rclone_binary: str, broken: str
) -> None:
    source, destination = tmp_path / "data", tmp_path / "backup"
    write_tree(source, FILES, mtime=OLD)
    script = BROKEN[broken](destination, tmp_path / "aside")
    binary = wrap_rclone(tmp_path, rclone_binary, COMPARISONS, script, after=False)
    try:
        result = attempt(tmp_path, binary, str(source), str(destination))
    finally:
        if destination.exists():
            destination.chmod(0o755)
    assert snapshot(source) == FILES
    assert isinstance(result, RunOutcome)  # nothing in the config was wrong
    if result.status == "failed":
        assert sentence(result.error), f"no reason given: {result!r}"
    else:
        # Every file is "missing" at a destination that is gone: a completed run must
        # say so, which turns the Problem sensor on.
        assert sentence(result.warning), f"a plain success: {result!r}"


# ---- more ways to lose a file, found by tests/property/test_deletion_oracle.py ----

IGNORING_CASE = {
    "--ignore-case": (["--ignore-case"], {}),
    "RCLONE_IGNORE_CASE": ([], {"RCLONE_IGNORE_CASE": "true"}),
}


@pytest.mark.parametrize("name", list(IGNORING_CASE))
def test_matching_without_case_does_not_widen_the_delete(
    tmp_path: Path,
    rclone_binary: str,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a.jpg is verified; A.jpg cannot be copied (a non-empty folder has its name at the
    # destination, which not even root can replace). Matched without case, the delete's
    # exact rule for a.jpg would take A.jpg too.
    caplog.set_level(logging.INFO)
    source, destination = tmp_path / "data", tmp_path / "backup"
    files = {"a.jpg": b"verified", "A.jpg": b"never copied"}
    write_tree(source, files, mtime=OLD)
    write_tree(destination, {"A.jpg/inside": b"x"})
    flags = flags_and_environment(IGNORING_CASE[name], monkeypatch)
    result = attempt(tmp_path, rclone_binary, str(source), str(destination), extra_args=flags)
    assert snapshot(source).get("A.jpg") == files["A.jpg"], "the unverified A.jpg was deleted"
    assert_kept_out(result, name, caplog)


def test_a_min_age_flag_does_not_override_the_age_guard_of_the_delete(
    tmp_path: Path, rclone_binary: str, caplog: pytest.LogCaptureFixture
) -> None:
    # hot.txt is written to after it was verified, right before the delete: only the
    # delete's own --min-age keeps it, and a later --min-age on its command line would win.
    caplog.set_level(logging.INFO)
    source, destination = tmp_path / "data", tmp_path / "backup"
    write_tree(source, {"stable.txt": b"s", "hot.txt": b"h"}, mtime=OLD)
    target = shlex.quote(str(source / "hot.txt"))
    binary = wrap_rclone(tmp_path, rclone_binary, "delete", f"echo more >> {target}", after=False)
    result = attempt(
        tmp_path, binary, str(source), str(destination), extra_args=["--min-age", "0s"]
    )
    assert snapshot(source).get("hot.txt") == b"hmore\n", "hot.txt was deleted after it changed"
    assert_kept_out(result, "--min-age", caplog)


def test_a_destination_that_holds_the_source_is_refused(tmp_path: Path, rclone_binary: str) -> None:
    # Copying data/ into its own parent writes data/data/x.jpg over data/x.jpg.
    source = tmp_path / "data"
    files = {"x.jpg": b"the top one", "data/x.jpg": b"the nested one"}
    write_tree(source, files, mtime=OLD)
    result = attempt(tmp_path, rclone_binary, str(source), str(tmp_path))
    after = snapshot(source)
    assert {path: after.get(path) for path in files} == files
    assert_refused(result)
