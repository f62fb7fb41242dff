"""The chaos run's checks themselves: each one finds what it is there to find."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mqtt_backup.jobs.history import RunRecord
from tests.chaos import checks
from tests.chaos.ledger import Ledger, lost_files


def run(run_id: str, started: str, finished: str | None, status: str = "completed") -> RunRecord:
    counters = dict.fromkeys(
        ("bytes_transferred", "files_transferred", "files_verified", "files_deleted",
         "bytes_deleted", "files_kept"),
        0,
    )  # fmt: skip
    return RunRecord(
        run_id=run_id,
        job_id="j",
        trigger="schedule",
        attempt=1,
        started_at=f"2026-12-01T10:00:{started}Z",
        finished_at=f"2026-12-01T10:00:{finished}Z" if finished else None,
        status=status,
        error=None,
        dry_run=False,
        **counters,
    )


def test_lost_files_wants_the_last_version_in_the_source_or_at_the_destination(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    ledger = Ledger()
    for name in ("kept", "moved", "lost", "stale"):
        ledger.write("j", src, name, b"v1")
    ledger.write("j", src, "stale", b"v2")
    dst.mkdir()
    (dst / "moved").write_bytes(b"v1")
    (dst / "stale").write_bytes(b"v1")  # an older version only
    (dst / "lost").write_bytes(b"v1-corrupt")
    for name in ("moved", "lost", "stale"):
        (src / name).unlink()
    found = lost_files(ledger, lambda _job: src, lambda _job: dst)
    assert [line.split(" (")[0] for line in found] == ["j: lost", "j: stale"]
    assert "destination holds other bytes" in found[0]


def test_stuck_runs_are_the_unfinished_and_the_too_long() -> None:
    runs = {
        "j": [
            run("quick", "00.000", "04.000"),
            run("slow", "10.000", "30.000", "failed"),
            run("open", "40.000", None, "running"),
        ]
    }
    found = checks.stuck_runs(runs, timedelta(seconds=13))
    assert len(found) == 2
    assert "run slow was failed only after 20.0s" in found[0]
    assert "open never finished" in found[1]


def test_overlapping_runs_are_found() -> None:
    apart = [run("a", "00.000", "05.000"), run("b", "05.000", "06.000")]
    overlapping = [run("a", "00.000", "05.000"), run("b", "04.999", "06.000")]
    assert checks.overlapping_runs({"j": apart}) == []
    assert len(checks.overlapping_runs({"j": overlapping})) == 1


def test_the_retained_state_must_be_terminal_and_the_last_runs() -> None:
    runs = {"j": [run("a", "00.000", "01.000"), run("b", "02.000", "03.000", "failed")]}
    assert checks.retained_mismatches({"j": {"status": "failed", "run_id": "b"}}, runs) == []
    assert checks.retained_mismatches({"j": {"status": "completed", "run_id": "a"}}, runs)
    assert checks.retained_mismatches({"j": {"status": "running", "run_id": "b"}}, runs)
    assert checks.retained_mismatches({}, runs) == ["j: no retained state on the broker"]
    assert checks.retained_mismatches({"k": {"status": "idle", "run_id": None}}, {"k": []}) == []


def test_leaked_secrets_names_the_secret_and_where() -> None:
    places = [("message on a/b", b'{"error": "pass=hunter2"}'), ("the log", b"nothing")]
    found = checks.leaked_secrets(places, {"sftp password": "hunter2", "other": "zzz"})
    assert found == ["the sftp password appears in 1 place(s), first in: message on a/b"]


def test_tracebacks_in_the_log_are_reported_with_their_exception() -> None:
    log = (
        "2026 ERROR mqtt_backup.jobs.executor: job j: unexpected error\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "sqlite3.OperationalError: database is locked\n"
        "2026 INFO fine\n"
    )
    (found,) = checks.tracebacks(log)
    assert "unexpected error" in found
    assert "database is locked" in found
