"""verify: checksum hashes each side once: the source beside the copy, the destination after.

Each test attacks what that order opens: the source hashed before the copy read it, the
destination hashed after the copy wrote it, names carried from one rclone call to the
other in a sum list, files without a hash, and a remote with hashes of its own.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine import verify as v
from tests.integration.rclone_servers import SftpServer, sftp_server, tree, write_tree
from tests.integration.test_engine_delete import calls, logging_rclone
from tests.integration.test_engine_transfer import run_job
from tests.property.oracle import check, snapshot

__all__ = ["sftp_server"]

OLD = 1_600_000_000


def vtd(src: Path | str, dst: Path | str, **deletion: Any) -> dict[str, Any]:
    return {
        "source": str(src),
        "destination": str(dst),
        "deletion": {"mode": "verify_then_delete", **deletion},
    }


def assert_no_loss(src: Path, dst: Path, known: dict[str, bytes]) -> None:
    """Every source file that is gone has a copy with its last bytes at the destination."""
    found = check(
        known=known,
        source_after=snapshot(src),
        destination_after=snapshot(dst),
        destination_before={},
        source_real=src,
        destination_real=dst,
    )
    assert found.all() == []


def hooked_rclone(tmp_path: Path, real: str, hooks: dict[str, str]) -> tuple[str, Path]:
    """An rclone that logs each call like ``logging_rclone`` and runs ``hooks[command]``
    (shell) before the first call of that command; a hook may wait for
    ``$MARKS/<command>``, touched when a call of that command ended."""
    marks = tmp_path / "marks"
    marks.mkdir()
    inner, log = logging_rclone(tmp_path, real)
    once = '[ -e "$MARKS/hooked-{0}" ] || {{ touch "$MARKS/hooked-{0}"; {1}; }}'
    cases = "".join(f"  {name}) {once.format(name, s)};;\n" for name, s in hooks.items())
    wrapper = tmp_path / "rclone-hooked"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"MARKS={shlex.quote(str(marks))}\n"
        f'case "$1" in\n{cases}esac\n'
        f'"{inner}" "$@"; rc=$?\n'
        'touch "$MARKS/$1"\n'
        "exit $rc\n",
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return str(wrapper), log


def wait_for(*commands: str) -> str:
    """Shell: wait (up to 20 s) until each of ``commands`` has ended once."""
    tests = " && ".join(f'[ -e "$MARKS/{c}" ]' for c in commands)
    return f"i=0; until {tests}; do sleep 0.05; i=$((i+1)); [ $i -gt 400 ] && break; done"


def test_each_side_is_hashed_once(make_config: Any, tmp_path: Path, rclone_binary: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {f"d{i}/f{j}.txt": f"{i}-{j}".encode() for i in range(3) for j in range(10)}
    write_tree(src, files, mtime=OLD)
    binary, log = logging_rclone(tmp_path, rclone_binary)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {} and tree(dst) == files
    assert outcome.deletion.files_deleted == len(files)
    seen = calls(log)
    commands = [c for w, c, _ in seen if w == "start"]
    # The source is hashed by hashsum, the destination by checksum; nothing hashes both.
    assert commands.count("hashsum") == 1 and commands.count("checksum") == 1
    assert "check" not in commands
    at = {(w, c): t for w, c, t in reversed(seen)}  # the first of each
    assert at["start", "hashsum"] < at["end", "copy"]  # beside the transfer
    assert at["end", "copy"] <= at["start", "checksum"]  # the destination after it
    assert at["end", "hashsum"] <= at["start", "checksum"]


def test_a_source_file_changed_between_its_hash_and_the_copy_is_kept(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # The hash is of the old bytes, the copy of the new ones: the destination differs
    # from the sum, is copied again and checked again on both sides, and the second
    # listing sees the file changed since the first.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"stable.txt": b"stable", "hot.txt": b"old"}, mtime=OLD)
    target = shlex.quote(str(src / "hot.txt"))
    change = f"{wait_for('hashsum', 'lsjson')}; echo new >> {target}"
    binary, _ = hooked_rclone(tmp_path, rclone_binary, {"copy": change})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {"hot.txt": b"oldnew\n"}
    assert tree(dst) == {"stable.txt": b"stable", "hot.txt": b"oldnew\n"}
    assert outcome.kept_reasons == {v.CHANGED: 1}
    assert outcome.warning is None


def test_a_change_that_keeps_size_and_time_before_the_copy_is_caught(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # No listing can see this change. The destination holds the new bytes, which differ
    # from the old sum; the repair's second look compares both sides as they are now.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"stable.txt": b"stable", "hot.txt": b"original"}, mtime=OLD)
    hot = src / "hot.txt"
    change = (
        f"{wait_for('hashsum', 'lsjson')}; printf CHANGED! > {shlex.quote(str(hot))}; "
        f"touch -d @{OLD} {shlex.quote(str(hot))}"
    )
    binary, _ = hooked_rclone(tmp_path, rclone_binary, {"copy": change})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert_no_loss(src, dst, {"stable.txt": b"stable", "hot.txt": b"CHANGED!"})
    assert tree(dst) == {"stable.txt": b"stable", "hot.txt": b"CHANGED!"}


def test_a_copy_damaged_before_the_destination_is_hashed_is_repaired(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"good.txt": b"good", "victim.txt": b"original"}
    write_tree(src, files, mtime=OLD)
    victim = shlex.quote(str(dst / "victim.txt"))
    # Same size, same modtime: only a hash sees it.
    damage = f"printf CORRUPT! > {victim}; touch -d @{OLD} {victim}"
    binary, log = hooked_rclone(tmp_path, rclone_binary, {"checksum": damage})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert outcome.warning is None
    assert tree(dst) == files and tree(src) == {}
    commands = [c for w, c, _ in calls(log) if w == "start"]
    assert "copy" in commands[commands.index("checksum") :]  # the repair


def test_a_copy_that_stays_damaged_is_kept(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"good.txt": b"good", "victim.txt": b"original"}, mtime=OLD)
    victim = shlex.quote(str(dst / "victim.txt"))
    # Damaged before both comparisons: the checksum and the repair's second look.
    damage = f"printf CORRUPT! > {victim}; touch -d @{OLD} {victim}"
    binary, _ = hooked_rclone(tmp_path, rclone_binary, {"checksum": damage, "check": damage})
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert tree(src) == {"victim.txt": b"original"}
    assert outcome.kept_reasons == {v.DIFFERS: 1}
    assert outcome.warning is not None and "victim.txt" in outcome.warning


# Names a sum list must carry exactly, or leave to rclone check, or keep.
ODD = {
    "back\\slash.txt": b"1",
    " lead.txt": b"2",
    "trail.txt ": b"3",
    "  two leading.txt": b"4",
    "star*?[x]{a,b}.txt": b"5",
    "#hash.txt": b"6",
    ";semi.txt": b"7",
    "tab\tin.txt": b"8",
    "new\nline.txt": b"9",
    "cr\rin.txt": b"10",
    "ünïcødé.txt": b"11",
    "d\u0065\u0301composed.txt": b"12",  # NFD: rclone reads sum lines as NFC
    "dir with space/x  y.txt": b"13",
    "a" * 200 + ".txt": b"14",
}


def test_odd_names_are_proven_and_deleted(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, ODD, mtime=OLD)
    binary, log = logging_rclone(tmp_path, rclone_binary)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert outcome.warning is None
    assert tree(dst) == ODD and tree(src) == {}
    assert outcome.deletion.files_deleted == len(ODD)
    commands = [c for w, c, _ in calls(log) if w == "start"]
    # The decomposed name is compared by check; every other one by its sum.
    assert commands.count("checksum") == 1 and commands.count("check") == 1


def test_a_name_that_is_not_utf8_is_kept_by_name(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # rclone lists the byte 0xff as U+FFFD: that name is not the file's, so no call
    # could name the file exactly. It is kept, and the run says so; the rest go.
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {"plain.txt": b"p"}, mtime=OLD)
    bad = os.path.join(os.fsencode(src), b"bad\xff.txt")
    with open(bad, "wb") as file:
        file.write(b"not utf-8")
    os.utime(bad, (OLD, OLD))
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": rclone_binary})
    assert outcome.status == "completed", outcome.error
    assert os.listdir(os.fsencode(src)) == [b"bad\xff.txt"]
    assert outcome.kept_reasons == {v.NOT_LISTABLE: 1}
    assert outcome.warning is not None and "not UTF-8" in outcome.warning
    assert outcome.deletion.files_deleted == 1


def test_a_file_without_a_source_hash_is_compared_by_check(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # A backend may have no hash for some objects (multipart uploads on S3): hashsum
    # prints spaces for them, as this wrapper makes it do for one file.
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"hashed.txt": b"h", "nohash.txt": b"n"}
    write_tree(src, files, mtime=OLD)
    blank = "s/^[0-9a-f]\\{32\\}  nohash.txt$/" + " " * 34 + "nohash.txt/"
    wrapper = tmp_path / "rclone-partial-hashsum"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = hashsum ]; then "{rclone_binary}" "$@" | sed \'{blank}\'; exit 0; fi\n'
        f'exec "{rclone_binary}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    binary, log = logging_rclone(tmp_path, str(wrapper))
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(src) == {} and tree(dst) == files
    commands = [c for w, c, _ in calls(log) if w == "start"]
    assert commands.count("checksum") == 1 and commands.count("check") == 1


def test_a_remote_with_hashes_of_its_own(
    make_config: Any, tmp_path: Path, rclone_binary: str, sftp_server: SftpServer
) -> None:
    # rclone serve sftp answers md5sum: the destination hashes its copies itself. One
    # copy is damaged there before it is hashed, and repaired.
    src = tmp_path / "src"
    files = {"a.txt": b"alpha", "sub/b c.txt": b"beta", "victim.txt": b"original"}
    write_tree(src, files, mtime=OLD)
    backup = sftp_server.root / "backup"
    victim = shlex.quote(str(backup / "victim.txt"))
    damage = f"printf CORRUPT! > {victim}; touch -d @{OLD} {victim}"
    binary, log = hooked_rclone(tmp_path, rclone_binary, {"checksum": damage})
    job = vtd(src, sftp_server.remote("backup"))
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(backup) == files and tree(src) == {}
    commands = [c for w, c, _ in calls(log) if w == "start"]
    assert commands.count("hashsum") == 1 and "checksum" in commands


def test_a_remote_source_is_hashed_by_hashsum(
    make_config: Any, tmp_path: Path, rclone_binary: str, sftp_server: SftpServer
) -> None:
    files = {"a.txt": b"alpha", "sub/b c.txt": b"beta"}
    write_tree(sftp_server.root / "photos", files, mtime=OLD)
    dst = tmp_path / "dst"
    binary, log = logging_rclone(tmp_path, rclone_binary)
    job = vtd(sftp_server.remote("photos"), dst)
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == files and tree(sftp_server.root / "photos") == {}
    seen = calls(log)
    at = {(w, c): t for w, c, t in reversed(seen)}  # the first of each
    # The sftp backend learns how to hash while the first files are asked for: rclone
    # may print no hash for them, and they are compared by check instead.
    assert at["end", "hashsum"] <= at["start", "checksum"]


def test_a_stalled_source_hashing_falls_back_to_the_check(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # The verification waits for the hashes taken beside the transfer: a hashsum that
    # stops moving is stopped by the stall watchdog, and the check compares every file.
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=OLD)
    binary, log = hooked_rclone(tmp_path, rclone_binary, {"hashsum": "exec sleep 60"})
    job = vtd(src, dst) | {"stall_timeout": "2s"}
    started = time.monotonic()
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "completed", outcome.error
    assert time.monotonic() - started < 2 + 8 + 10
    assert tree(src) == {} and tree(dst) == files
    commands = [c for w, c, _ in calls(log) if w == "start"]
    assert "checksum" not in commands and "check" in commands


def test_a_run_that_fails_early_does_not_wait_for_the_hash_type(
    make_config: Any, tmp_path: Path, rclone_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside the transfer, rclone is asked which hashes a remote has: a question the
    # run stops when it ends, however long the remote would take to answer.
    monkeypatch.setenv("RCLONE_CONFIG_NAS_TYPE", "alias")
    monkeypatch.setenv("RCLONE_CONFIG_NAS_REMOTE", str(tmp_path / "dst"))
    binary, _ = hooked_rclone(tmp_path, rclone_binary, {"backend": "exec sleep 60"})
    job = vtd(tmp_path / "missing", "nas:")
    started = time.monotonic()
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": binary})
    assert outcome.status == "failed"
    assert outcome.error == "source directory not found"
    assert time.monotonic() - started < 20


def test_a_destination_copy_without_a_hash_proves_nothing(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    # rclone checksum counts a destination file with no hash of the type as matching, and
    # only says how many at the end (an S3 object uploaded in parts has no MD5). It does
    # not say which: none of its matches count.
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"a", "b.txt": b"b"}
    write_tree(src, files, mtime=OLD)
    notice = '{"level":"warning","msg":"1 hashes could not be checked","source":"x"}'
    wrapper = tmp_path / "rclone-hashless"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = checksum ]; then "{rclone_binary}" "$@"; rc=$?; '
        f"echo '{notice}' >&2; exit $rc; fi\n"
        f'exec "{rclone_binary}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    outcome, _ = run_job(make_config, tmp_path, vtd(src, dst), rclone={"binary": str(wrapper)})
    assert outcome.status == "failed"
    assert outcome.error is not None and "verify to download" in outcome.error
    assert not outcome.retryable
    assert tree(src) == files
