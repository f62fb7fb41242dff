"""copy, sync and move with a real rclone; cancel, timeout, dry run and failures."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from mqtt_backup.engine.events import Event, PhaseStarted, Progress, RunOutcome
from mqtt_backup.engine.runner import execute
from tests.integration.rclone_servers import tree, write_tree

FILES = {"a.txt": b"alpha", "sub/b.txt": b"beta", "sub/deeper/c d.txt": b"gamma"}


def run_job(
    make_config: Any,
    tmp_path: Path,
    job: dict[str, Any],
    *,
    rclone: dict[str, Any] | None = None,
    cancel: threading.Event | None = None,
    dry_run: bool = False,
    on_event: Any = None,
) -> tuple[RunOutcome, list[Event]]:
    config = make_config({"jobs": {"t": job}, "rclone": rclone or {}})
    events: list[Event] = []

    def record(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    outcome = execute(
        "t",
        config.jobs["t"],
        config.rclone,
        on_event=record,
        cancel=cancel or threading.Event(),
        work_dir=tmp_path / "work",
        dry_run=dry_run,
    )
    return outcome, events


def test_copy(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES)
    outcome, events = run_job(make_config, tmp_path, {"source": str(src), "destination": str(dst)})
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == FILES and tree(src) == FILES
    assert events[0] == PhaseStarted("transferring")
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].files == 3


def test_sync_removes_extra_destination_files(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES)
    write_tree(dst, {"extra.txt": b"old"})
    job = {"source": str(src), "destination": str(dst), "operation": "sync"}
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == FILES


def test_move_removes_source_files(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES)
    job = {
        "source": str(src),
        "destination": str(dst),
        "operation": "move",
        "extra_args": ["--disable", "Move,DirMove"],
    }
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "completed", outcome.error
    assert tree(dst) == FILES and tree(src) == {}


def test_missing_source_fails_clearly(make_config: Any, tmp_path: Path) -> None:
    job = {
        "source": str(tmp_path / "nope"),
        "destination": str(tmp_path / "dst"),
        "deletion": {"mode": "verify_then_delete"},
    }
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed"
    assert outcome.error == "source directory not found"
    assert outcome.retryable is False and outcome.deletion.files_deleted == 0


def test_missing_binary(make_config: Any, tmp_path: Path) -> None:
    job = {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}
    outcome, _ = run_job(make_config, tmp_path, job, rclone={"binary": str(tmp_path / "none")})
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("rclone not found at")


def slow_job(src: Path, dst: Path, **extra: Any) -> dict[str, Any]:
    write_tree(src, {"big.bin": os.urandom(4 * 1024 * 1024), "small.txt": b"x"})
    return {
        "source": str(src),
        "destination": str(dst),
        "extra_args": ["--bwlimit", "1M"],
        "deletion": {"mode": "verify_then_delete"},
        **extra,
    }


def test_cancel_mid_transfer_deletes_nothing(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    job = slow_job(src, dst)
    before = tree(src)
    cancel = threading.Event()

    def cancel_on_progress(event: Event) -> None:
        if isinstance(event, Progress) and event.bytes > 0:
            cancel.set()

    outcome, events = run_job(
        make_config,
        tmp_path,
        job,
        cancel=cancel,
        rclone={"stats_interval": "200ms"},
        on_event=cancel_on_progress,
    )
    assert outcome.status == "cancelled"
    assert tree(src) == before
    assert PhaseStarted("verifying") not in events
    assert outcome.deletion.files_deleted == 0


def test_timeout_fails_and_deletes_nothing(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    job = slow_job(src, dst, timeout="1s")
    before = tree(src)
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed"
    assert outcome.error == "timed out after 1s"
    assert outcome.retryable is True
    assert tree(src) == before


def test_dry_run_changes_nothing(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES, mtime=1_600_000_000)
    write_tree(dst, {"a.txt": b"alpha"}, mtime=1_600_000_000)
    job = {"source": str(src), "destination": str(dst), "deletion": {"mode": "verify_then_delete"}}
    outcome, events = run_job(make_config, tmp_path, job, dry_run=True)
    assert outcome.status == "completed", outcome.error
    assert tree(src) == FILES
    assert tree(dst) == {"a.txt": b"alpha"}
    assert outcome.deletion.files_deleted == 0
    assert outcome.deletion.files_verified == 1  # a.txt was already there
    assert PhaseStarted("deleting") not in events


def test_an_unknown_flag_is_named(make_config: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    job = {"source": str(src), "destination": str(tmp_path / "dst"), "extra_args": ["--bogus"]}
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.error == (
        "rclone rejected its command line (syntax or usage error): unknown flag: --bogus"
    )


def test_a_fatal_error_gives_rclones_reason_not_its_last_words(
    make_config: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(100_000))
    job = {
        "source": str(src),
        "destination": str(tmp_path / "dst"),
        "extra_args": ["--max-transfer", "10k"],
    }
    outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "max transfer limit reached" in outcome.error
    assert "not attempting retries" not in outcome.error
