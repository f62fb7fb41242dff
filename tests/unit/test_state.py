from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mqtt_backup.engine.events import DeletionCounts, PhaseStarted, Progress, RunOutcome
from mqtt_backup.jobs import state as st

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def running(mode: str = "verify_then_delete") -> st.JobState:
    return st.started(st.initial("photos", "Photos", mode), "run1", "schedule", T0)


def test_payload_has_every_field_of_the_contract() -> None:
    payload = json.loads(running().to_json())
    for key in (
        "job_id",
        "name",
        "status",
        "phase",
        "percent",
        "bytes_transferred",
        "total_bytes",
        "speed_bytes",
        "eta_seconds",
        "files_transferred",
        "total_files",
        "errors",
        "deletion",
        "run_id",
        "trigger",
        "started_at",
        "finished_at",
        "duration_seconds",
        "last_success_at",
        "last_result",
        "next_run_at",
        "error",
        "updated_at",
        "dry_run",
    ):
        assert key in payload
    assert set(payload["deletion"]) == {
        "enabled",
        "mode",
        "phase",
        "files_verified",
        "files_deleted",
        "bytes_deleted",
        "files_kept",
        "kept",
    }
    assert payload["started_at"] == "2026-11-29T03:00:00Z"
    assert payload["status"] == "running"
    assert payload["phase"] == "transferring"


def test_a_full_verify_then_delete_run() -> None:
    s = running()
    s = st.apply(
        s,
        Progress(bytes=50, total_bytes=200, speed=10, eta=15, files=1, total_files=4),
        T0 + timedelta(seconds=5),
    )
    assert (s.percent, s.eta_seconds, s.duration_seconds) == (25.0, 15, 5.0)
    s = st.apply(s, PhaseStarted("verifying"), T0 + timedelta(seconds=20))
    assert s.deletion.phase == "verifying"
    assert s.speed_bytes == 0
    s = st.apply(s, PhaseStarted("deleting"), T0 + timedelta(seconds=21))
    s = st.apply(s, DeletionCounts(4, 3, 150, 1), T0 + timedelta(seconds=22))
    final = st.finished(
        s,
        RunOutcome(
            "completed",
            progress=Progress(200, 200, files=4, total_files=4),
            deletion=DeletionCounts(4, 3, 150, 1),
            kept_reasons={"too_young": 1},
        ),
        T0 + timedelta(seconds=30),
    )
    payload = json.loads(final.to_json())
    assert payload["status"] == "completed"
    assert payload["phase"] == "done"
    assert payload["percent"] == 100
    assert payload["deletion"] == {
        "enabled": True,
        "mode": "verify_then_delete",
        "phase": "done",
        "files_verified": 4,
        "files_deleted": 3,
        "bytes_deleted": 150,
        "files_kept": 1,
        "kept": {"too_young": 1},
    }
    assert payload["error"] is None
    assert payload["last_success_at"] == "2026-11-29T03:00:30Z"
    assert payload["finished_at"] == "2026-11-29T03:00:30Z"
    assert payload["duration_seconds"] == 30.0
    assert final.is_terminal


def test_deletion_is_reachable_only_from_verifying() -> None:
    with pytest.raises(ValueError, match="deleting can only follow verifying"):
        st.apply(running(), PhaseStarted("deleting"), T0)


def test_verifying_must_follow_the_transfer() -> None:
    s = st.apply(running(), PhaseStarted("verifying"), T0)
    with pytest.raises(ValueError):
        st.apply(s, PhaseStarted("verifying"), T0)


def test_events_for_a_job_that_is_not_running_are_refused() -> None:
    with pytest.raises(ValueError):
        st.apply(st.initial("a", "A"), Progress(), T0)


def test_failure_keeps_last_success_and_sets_error() -> None:
    ok = st.finished(running(), RunOutcome("completed"), T0)
    again = st.started(ok, "run2", "command", T0 + timedelta(days=1))
    assert again.error is None
    assert again.finished_at is None
    failed = st.finished(
        again,
        RunOutcome("failed", error="source directory not found"),
        T0 + timedelta(days=1, seconds=3),
    )
    assert failed.status == "failed"
    assert failed.last_result == "failed"
    assert failed.error == "source directory not found"
    assert failed.last_success_at == T0
    assert failed.percent == 0


def test_rclones_errors_show_while_the_run_goes_on() -> None:
    s = st.apply(running(), Progress(bytes=5, total_bytes=10), T0)
    assert (s.errors, s.error) == (0, None)
    slow = st.apply(
        s, Progress(bytes=5, total_bytes=10, errors=2, last_error="connection lost"), T0
    )
    assert (slow.status, slow.errors, slow.error) == ("running", 2, "connection lost")
    # A later report without an error text keeps the last one; the next phase keeps it too.
    later = st.apply(slow, Progress(bytes=6, total_bytes=10, errors=2), T0)
    assert st.apply(later, PhaseStarted("verifying"), T0).error == "connection lost"
    # The run's own ending decides the final error: none when it completed after all.
    assert st.finished(later, RunOutcome("completed"), T0).error is None
    stalled = RunOutcome("failed", error="no progress for 10m (rclone: connection lost); stopped")
    assert st.finished(later, stalled, T0).error == stalled.error
    # The next run starts without the old error.
    assert st.started(later, "run2", "command", T0).error is None


def test_interrupted_run() -> None:
    s = st.apply(running(), PhaseStarted("verifying"), T0)
    gone = st.interrupted(s, T0 + timedelta(minutes=1), "the process stopped")
    assert gone.status == "interrupted"
    assert gone.deletion.phase == "done"
    assert gone.last_result == "interrupted"


def test_no_deletion_block_for_plain_jobs() -> None:
    s = st.apply(running("none"), PhaseStarted("verifying"), T0)
    assert s.deletion.enabled is False
    assert s.deletion.phase is None


def test_queued_then_started_clears_the_previous_run() -> None:
    done = st.finished(running(), RunOutcome("failed", error="x"), T0)
    waiting = st.queued(done, "run9", "schedule", T0)
    assert (waiting.status, waiting.error, waiting.run_id) == ("queued", None, "run9")
    assert waiting.is_active


def test_round_trip_json() -> None:
    s = st.finished(running(), RunOutcome("completed"), T0)
    assert st.JobState.from_json(s.to_json()) == s


def test_progress_percent_with_nothing_to_transfer() -> None:
    assert Progress(total_bytes=0, files=0, total_files=0).percent == 100.0
    assert Progress(bytes=5, total_bytes=10).percent == 50.0


def test_newer_picks_the_state_updated_last() -> None:
    old = st.initial("docs", "Docs").model_copy(update={"updated_at": T0})
    new = old.model_copy(update={"status": "failed", "updated_at": T0 + timedelta(seconds=1)})
    assert st.newer(old, new) is new
    assert st.newer(new, old) is new
    same = old.model_copy(update={"status": "completed"})
    assert st.newer(same, old) is same  # a tie keeps the first
    unknown = old.model_copy(update={"updated_at": None})
    assert st.newer(unknown, new) is unknown


def test_a_warning_ends_a_completed_run_with_an_error_sentence() -> None:
    sentence = "kept source files not proven at the destination: 1 file missing"
    final = st.finished(
        running(),
        RunOutcome("completed", deletion=DeletionCounts(4, 3, 150, 1), warning=sentence),
        T0 + timedelta(seconds=30),
    )
    assert final.status == "completed" and final.error == sentence
    assert final.last_success_at == T0 + timedelta(seconds=30)


def test_a_dry_run_is_never_a_success() -> None:
    before = T0 - timedelta(days=3)
    state = st.initial("photos", "Photos", "verify_then_delete").model_copy(
        update={"last_success_at": before}
    )
    dry = st.started(state, "r2", "cli", T0, dry_run=True)
    assert dry.dry_run
    final = st.finished(dry, RunOutcome("completed"), T0 + timedelta(seconds=5))
    assert final.status == "completed" and final.dry_run
    assert final.last_success_at == before
    assert json.loads(final.to_json())["dry_run"] is True
    again = st.started(final, "r3", "schedule", T0 + timedelta(minutes=1))
    assert not again.dry_run


def test_hook_phases_come_before_and_after_the_engines() -> None:
    start = st.started(
        st.initial("photos", "Photos", "verify_then_delete"), "r1", "cli", T0, phase="before_hook"
    )
    assert (start.status, start.phase, start.deletion.phase) == ("running", "before_hook", None)
    s = st.apply(start, PhaseStarted("transferring"), T0 + timedelta(seconds=1))
    assert s.phase == s.deletion.phase == "transferring"
    s = st.apply(s, PhaseStarted("verifying"), T0 + timedelta(seconds=2))
    s = st.hook_started(s, "on_failure", T0 + timedelta(seconds=3))
    assert (s.phase, s.deletion.phase) == ("on_failure_hook", "verifying")
    s = st.hook_started(s, "after", T0 + timedelta(seconds=4))
    assert s.phase == "after_hook"
    final = st.finished(s, RunOutcome("failed", error="boom"), T0 + timedelta(seconds=5))
    assert (final.phase, final.deletion.phase) == ("done", "done")


def test_the_transfer_cannot_start_again_later_in_a_run() -> None:
    s = st.apply(running(), PhaseStarted("verifying"), T0)
    with pytest.raises(ValueError, match="transferring can only follow"):
        st.apply(s, PhaseStarted("transferring"), T0)
    with pytest.raises(ValueError, match="hooks for a job that is idle"):
        st.hook_started(st.initial("photos", "Photos"), "after", T0)


def test_a_skipped_run_is_terminal_and_never_a_success() -> None:
    before = T0 - timedelta(days=3)
    state = st.initial("photos", "Photos").model_copy(update={"last_success_at": before})
    start = st.started(state, "r2", "schedule", T0, phase="before_hook")
    reason = "skipped by before hook 1 (mount-disk): the backup disk is not connected"
    final = st.finished(start, RunOutcome("skipped", error=reason), T0 + timedelta(seconds=2))
    assert final.is_terminal and not final.is_active
    assert (final.status, final.last_result, final.error) == ("skipped", "skipped", reason)
    assert final.last_success_at == before
    assert final.percent == 0
