"""verify-then-delete against a real rclone, and the attacks on its no-unverified-deletion rule."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine import verify as v
from mqtt_backup.engine.events import Event, PhaseStarted
from tests.integration.rclone_servers import (
    COMPARISONS,
    folders,
    rclone_without_repair,
    tree,
    wrap_rclone,
    write_tree,
)
from tests.integration.test_engine_transfer import run_job

OLD = 1_600_000_000  # 2020: old enough for any min_age used here

ODD_NAMES = {
    "ünïcødé/fïlé ñame.txt": b"unicode",
    "with space/a b.txt": b"space",
    "#hash.txt": b"hash",
    ";semi.txt": b"semi",
    "-dash.txt": b"dash",
    " leading.txt": b"lead",
    "trailing.txt ": b"trail",
    "{brace},comma[x]*?.txt": b"glob",
    "empty.txt": b"",
    "deep/er/still/empty": b"",
}


def many_files(count: int) -> dict[str, bytes]:
    return {f"bulk/d{i % 20}/f{i}.dat": f"{i}".encode() for i in range(count)}


def vtd(src: Path, dst: Path, **deletion: Any) -> dict[str, Any]:
    return {
        "source": str(src),
        "destination": str(dst),
        "deletion": {"mode": "verify_then_delete", **deletion},
    }


def test_verify_then_delete_large_tree_with_odd_names(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {**ODD_NAMES, **many_files(2100)}
    write_tree(src, files, mtime=OLD)
    dirs_before = folders(src)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst, min_age="1d"))
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == files
    assert tree(src) == {}
    assert outcome.deletion.files_verified == len(files)
    assert outcome.deletion.files_deleted == len(files)
    assert outcome.deletion.bytes_deleted == sum(len(c) for c in files.values())
    assert outcome.deletion.files_kept == 0
    assert folders(src) == dirs_before  # empty folders stay unless asked


def test_remove_empty_dirs(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, ODD_NAMES, mtime=OLD)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst, remove_empty_dirs=True))
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == ODD_NAMES
    assert src.is_dir() and list(src.iterdir()) == []


def test_newline_in_name_goes_through_rclone_encoding(make_config: Any, tmp_path: Path) -> None:
    # rclone's local backend shows a newline as U+240A, so such a name is listable,
    # verified and deleted like any other (the plan keeps names that really hold one).
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"new\nline.txt": b"n", "plain.txt": b"p"}
    write_tree(src, files, mtime=OLD)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == files and tree(src) == {}
    assert outcome.deletion.files_deleted == 2


def test_young_files_are_kept(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"old.txt": b"o"}, mtime=OLD)
    write_tree(src, {"new.txt": b"n"})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst, min_age="1h"))
    assert tree(src) == {"new.txt": b"n"}
    assert outcome.kept_reasons == {v.TOO_YOUNG: 1}


def test_corrupted_destination_with_same_size_and_mtime_is_repaired_then_deleted(
    make_config: Any, tmp_path: Path
) -> None:
    # rclone copy skips a destination file with the source's size and modtime, whatever its
    # bytes; the check sees the difference, and the repair copy cannot skip it.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"good.txt": b"good", "victim.txt": b"original"}, mtime=OLD)
    write_tree(dst, {"victim.txt": b"CORRUPT!"}, mtime=OLD)  # same size, same mtime
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    assert outcome.status == "completed", outcome.error
    assert outcome.error is None and outcome.warning is None
    assert tree(dst) == {"good.txt": b"good", "victim.txt": b"original"}
    assert tree(src) == {}
    assert outcome.deletion.files_deleted == 2


def test_a_copy_that_stays_corrupt_is_kept_and_the_run_warns(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"good.txt": b"good", "victim.txt": b"original"}, mtime=OLD)
    write_tree(dst, {"victim.txt": b"CORRUPT!"}, mtime=OLD)
    # A repair copy that does nothing, as a destination that keeps corrupting writes would.
    binary = rclone_without_repair(tmp_path, rclone_binary)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed"
    assert tree(src) == {"victim.txt": b"original"}
    assert tree(dst)["victim.txt"] == b"CORRUPT!"
    assert outcome.kept_reasons == {v.DIFFERS: 1}
    assert outcome.kept_files == {v.DIFFERS: ["victim.txt"]}
    assert outcome.warning is not None
    assert "differing at the destination" in outcome.warning
    assert "victim.txt" in outcome.warning


def test_failed_copy_keeps_that_file_and_fails(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"ok.txt": b"ok", "blocked.txt": b"blocked"}, mtime=OLD)
    # A non-empty folder where the file must go: unwritable even for root.
    write_tree(dst, {"blocked.txt/inside": b"x"})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    assert outcome.status == "failed"
    assert outcome.error and "rclone" in outcome.error
    assert str(src) not in outcome.error and str(dst) not in outcome.error
    assert tree(src) == {"blocked.txt": b"blocked"}
    assert outcome.deletion.files_deleted == 1


def test_source_modified_after_check_is_kept(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"stable.txt": b"s", "hot.txt": b"h"}, mtime=OLD)
    target = shlex.quote(str(src / "hot.txt"))
    binary = wrap_rclone(
        tmp_path, rclone_binary, COMPARISONS, f"echo more >> {target}", after=True
    )
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {"hot.txt": b"hmore\n"}
    assert outcome.kept_reasons == {v.CHANGED: 1}


def test_source_modified_right_before_delete_is_kept(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"stable.txt": b"s", "hot.txt": b"h"}, mtime=OLD)
    target = shlex.quote(str(src / "hot.txt"))
    binary = wrap_rclone(tmp_path, rclone_binary, "delete", f"echo more >> {target}", after=False)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {"hot.txt": b"hmore\n"}
    assert outcome.kept_reasons == {v.SKIPPED_AT_DELETE: 1}
    assert outcome.deletion.files_deleted == 1


def test_size_only_deletes_what_matches_by_size(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"a.txt": b"a"}, mtime=OLD)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst, verify="size"))
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {} and os.path.exists(dst / "a.txt")


def test_a_source_file_that_cannot_be_deleted_is_counted_as_kept(
    make_config: Any, tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"free.txt": b"f", "stuck.txt": b"s"}, mtime=OLD)
    # Immutable: not even root may delete it.
    if subprocess.run(["chattr", "+i", str(src / "stuck.txt")], check=False).returncode != 0:
        pytest.fail("chattr +i is needed for this test (e2fsprogs on an ext4-like filesystem)")
    try:
        outcome, _ = run_job(make_config, tmp_path, vtd(src, dst))
    finally:
        subprocess.run(["chattr", "-i", str(src / "stuck.txt")], check=False)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("deleting failed")
    assert tree(src) == {"stuck.txt": b"s"}
    assert outcome.kept_reasons == {v.DELETE_FAILED: 1}
    assert (outcome.deletion.files_deleted, outcome.deletion.files_kept) == (1, 1)
    assert outcome.deletion.bytes_deleted == 1


def logging_rclone(tmp_path: Path, real: str, first_lsjson: str | None = None) -> tuple[str, Path]:
    """An rclone that logs each call's start and end, and runs ``first_lsjson`` (shell)
    in place of the first listing, if given."""
    if first_lsjson is None:
        first_lsjson = f'"{real}" "$@"; rc=$?'

    log, mark = tmp_path / "calls.log", tmp_path / "first-listing-done"
    wrapper = tmp_path / "rclone-logged"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "start $1 $(date +%s.%N)" >> "{log}"\n'
        f'if [ "$1" = lsjson ] && [ ! -e "{mark}" ]; then\n'
        f'  touch "{mark}"\n  {first_lsjson}\n'
        "else\n"
        f'  "{real}" "$@"; rc=$?\n'
        "fi\n"
        f'echo "end $1 $(date +%s.%N)" >> "{log}"\n'
        "exit $rc\n",
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return str(wrapper), log


def calls(log: Path) -> list[tuple[str, str, float]]:
    return [(w, c, float(t)) for w, c, t in (line.split() for line in log.read_text().splitlines())]


def test_a_clean_delete_needs_no_second_look_at_the_source(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # rclone's final stats count the deletions; only a shortfall costs another listing.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {f"d{i}/f{j}.txt": b"x" for i in range(3) for j in range(20)}, mtime=OLD)
    binary, log = logging_rclone(tmp_path, rclone_binary)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert outcome.deletion.files_deleted == 60
    commands = [c for w, c, _ in calls(log) if w == "start"]
    # Only the two probe files are removed after the delete; no listing.
    assert commands[commands.index("delete") :] == ["delete", "deletefile", "deletefile"]


def test_first_listing_runs_beside_the_transfer_and_ends_before_the_check(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, many_files(50), mtime=OLD)
    # A slow first listing: the check must still wait for it.
    slow = f'sleep 1; "{rclone_binary}" "$@"; rc=$?'
    binary, log = logging_rclone(tmp_path, rclone_binary, slow)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {}
    assert outcome.deletion.files_deleted == 50
    seen = calls(log)
    commands = [c for w, c, _ in seen if w == "start"]
    # The early listing, the look for the source's probe, the second listing; no other.
    assert commands.count("lsjson") == 3
    at = {(w, c): t for w, c, t in reversed(seen)}  # the first of each
    assert at["start", "lsjson"] < at["end", "copy"]  # beside the transfer
    assert at["end", "lsjson"] <= at["start", "checksum"]  # but done before the comparison


def test_a_failed_first_listing_is_taken_again_after_the_transfer(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = many_files(30)
    write_tree(src, files, mtime=OLD)
    binary, log = logging_rclone(tmp_path, rclone_binary, "rc=1")
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == files
    assert tree(src) == {}
    seen = calls(log)
    listings = [t for w, c, t in seen if (w, c) == ("start", "lsjson")]
    assert len(listings) == 4  # early (failed), probe look, taken again, second listing
    copy_end = next(t for w, c, t in seen if (w, c) == ("end", "copy"))
    assert listings[2] >= copy_end  # taken again, after the transfer


def test_cancel_while_the_first_listing_runs_deletes_nothing(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = many_files(20)
    write_tree(src, files, mtime=OLD)
    binary, _ = logging_rclone(tmp_path, rclone_binary, f'sleep 30; "{rclone_binary}" "$@"')
    cancel = threading.Event()

    def cancel_on_verify(event: Event) -> None:
        if event == PhaseStarted("verifying"):
            cancel.set()

    started = time.monotonic()
    outcome, events = run_job(
        make_config,
        tmp_path,
        vtd(src, dst),
        rclone={"binary": binary},
        cancel=cancel,
        on_event=cancel_on_verify,
    )
    assert outcome.status == "cancelled"
    assert time.monotonic() - started < 20  # not waiting for the listing to end
    assert PhaseStarted("deleting") not in events
    assert tree(src) == files
