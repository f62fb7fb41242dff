"""The user's flags and RCLONE_* variables never reach the verification or the delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine import verify as v
from tests.integration.rclone_servers import rclone_without_repair, tree, write_tree
from tests.integration.test_engine_transfer import run_job

OLD = 1_600_000_000


def vtd(src: Path, dst: Path, **deletion: Any) -> dict[str, Any]:
    return {
        "source": str(src),
        "destination": str(dst),
        "deletion": {"mode": "verify_then_delete", **deletion},
    }


def broken_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A source whose .txt file fails to copy (a folder is in its way at the destination)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"photo.jpg": b"jpg", "notes.txt": b"txt"}, mtime=OLD)
    write_tree(dst, {"notes.txt/in-the-way": b"x"})
    return src, dst


@pytest.mark.parametrize(
    "extra_args",
    [
        ["--include", "*.txt"],
        ["--filter", "+ *.txt"],
        ["--include=*.txt"],
        ["-v", "--files-from", "/dev/null"],
    ],
)
def test_global_filter_flags_cannot_widen_the_delete(
    make_config: Any, tmp_path: Path, extra_args: list[str]
) -> None:
    src, dst = broken_copy(tmp_path)
    job = vtd(src, dst) | {"filters": ["+ *.jpg", "- *"]}
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"extra_args": extra_args})
    # notes.txt never reached the destination: whatever the flags, it stays.
    assert tree(src).get("notes.txt") == b"txt"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RCLONE_INCLUDE", "*.txt"),
        ("RCLONE_FILTER", "+ *.txt"),
        ("RCLONE_EXCLUDE", "*.jpg"),
        ("RCLONE_DRY_RUN", "true"),
        ("RCLONE_MAX_DEPTH", "0"),
    ],
)
def test_rclone_environment_cannot_change_what_is_proven(
    make_config: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    src, dst = broken_copy(tmp_path)
    monkeypatch.setenv(name, value)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    assert tree(src).get("notes.txt") == b"txt"
    # The verification saw every file, as if the variable were not set.
    assert outcome.deletion.files_verified + outcome.deletion.files_kept == 2


def test_size_only_in_the_environment_does_not_weaken_a_checksum(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"victim.txt": b"original"}, mtime=OLD)
    write_tree(dst, {"victim.txt": b"CORRUPT!"}, mtime=OLD + 10)  # same size, other mtime
    monkeypatch.setenv("RCLONE_SIZE_ONLY", "true")  # the transfer skips the file
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    assert outcome.status == "completed", outcome.error
    # The sealed check compared bytes, found the damage, and the repair fixed it first.
    assert tree(dst) == {"victim.txt": b"original"}
    assert tree(src) == {}


def test_size_only_in_extra_args_does_not_weaken_a_checksum(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"victim.txt": b"original"}, mtime=OLD)
    write_tree(dst, {"victim.txt": b"CORRUPT!"}, mtime=OLD + 10)
    # A repair that cannot help: the damage stays, and so must the source.
    binary = rclone_without_repair(tmp_path, rclone_binary)
    rclone = {"binary": binary, "extra_args": ["--size-only"]}
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone=rclone)
    assert tree(src) == {"victim.txt": b"original"}
    assert outcome.kept_reasons == {v.DIFFERS: 1}


def test_connection_settings_still_reach_the_verification(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A remote defined in the environment and a backend flag: both are connection settings.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"a.txt": b"a"}, mtime=OLD)
    monkeypatch.setenv("RCLONE_CONFIG_NAS_TYPE", "alias")
    monkeypatch.setenv("RCLONE_CONFIG_NAS_REMOTE", str(dst))
    rclone = {"extra_args": ["--local-no-check-updated", "--checkers", "2", "--fast-list"]}
    outcome, _ = run_job(
        make_config, tmp_path, vtd(src, Path("nas:")) | {"destination": "nas:"}, rclone=rclone
    )
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == {"a.txt": b"a"} and tree(src) == {}


def test_a_check_that_compared_nothing_fails_the_run(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"a.txt": b"a", "b.txt": b"b"}, mtime=OLD)
    # A check that cannot open the destination exits 1, as "differences found" does.
    binary = tmp_path / "rclone-blind-check"
    binary.write_text(
        "#!/bin/sh\n"
        'case "$1" in check|checksum) echo \'{"level":"error","msg":"couldn\'"\'"\'t connect: '
        "connection refused\"}' >&2; exit 1;; esac\n"
        f'exec "{rclone_binary}" "$@"\n',
        encoding="utf-8",
    )
    binary.chmod(0o755)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": str(binary)})
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "did not compare 2 of 2 files" in outcome.error
    assert "connection refused" in outcome.error
    assert tree(src) == {"a.txt": b"a", "b.txt": b"b"}
