"""The Prometheus metrics of job states, read back with prometheus_client's own parser."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mqtt_backup import __version__
from mqtt_backup.engine.events import DeletionCounts, Progress, RunOutcome
from mqtt_backup.errors import MqttBackupError
from mqtt_backup.homeassistant.discovery import discovery_messages
from mqtt_backup.jobs import state as st
from mqtt_backup.metrics import JobMetrics, Snapshot, families, is_overdue, write_textfile
from tests.unit.test_discovery import entities, render

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
JOBS = {
    "photos": {"source": "/a", "destination": "nas:a", "schedule": "every 6h",
               "stale_after": "2d", "deletion": {"mode": "verify_then_delete"}},
    "manual": {"source": "/b", "destination": "nas:b"},
}  # fmt: skip


def finished(
    state: st.JobState, status: str, at: datetime, *, files: int = 3, nbytes: int = 3000
) -> st.JobState:
    running = st.started(state, f"run-{at.timestamp():.0f}", "schedule", at - timedelta(minutes=2))
    running = st.apply(running, Progress(bytes=nbytes, total_bytes=nbytes, files=files), at)
    outcome = RunOutcome(
        status,  # type: ignore[arg-type]
        deletion=DeletionCounts(files_verified=files, files_deleted=files - 1, bytes_deleted=99,
                                files_kept=1),
    )  # fmt: skip
    return st.finished(running, outcome, at)


def scrape(snapshot: Snapshot) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each metric's samples by their labels, as a scraper parses the text."""
    registry = CollectorRegistry()
    registry.register(_Fixed(snapshot))
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class _Fixed:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Any:
        return families(self.snapshot)


def job(job_id: str) -> tuple[tuple[str, str], ...]:
    return (("job_id", job_id),)


def snapshot(states: dict[str, st.JobState], **extra: Any) -> Snapshot:
    last = {job: s for job, s in states.items() if s.is_terminal}
    values: dict[str, Any] = {
        "now": T0,
        "states": states,
        "last_runs": last,
        "stale_after": {"photos": timedelta(days=2), "manual": None},
    }
    return Snapshot(**(values | extra))


# overdue: the same answer as Home Assistant's Overdue sensor

NEVER = st.initial("photos", "Photos")


@pytest.mark.parametrize(
    "state",
    [
        NEVER,
        NEVER.model_copy(update={"finished_at": T0, "status": "failed"}),
        NEVER.model_copy(update={"finished_at": T0, "last_success_at": T0 - timedelta(days=1)}),
        NEVER.model_copy(update={"finished_at": T0, "last_success_at": T0 - timedelta(days=3)}),
        NEVER.model_copy(update={"last_success_at": T0 - timedelta(days=2, seconds=1)}),
        NEVER.model_copy(update={"last_success_at": T0 - timedelta(days=2)}),
        NEVER.model_copy(update={"last_success_at": T0 + timedelta(minutes=10)}),
        NEVER.model_copy(update={"last_success_at": T0 + timedelta(days=3 * 365)}),
        # A never-succeeded job that is running again: its finished_at was reset.
        st.started(NEVER.model_copy(update={"finished_at": T0}), "r", "schedule", T0),
    ],
)
def test_overdue_is_home_assistants_overdue(make_config: Any, state: st.JobState) -> None:
    config = make_config({"instance": "lab", "mqtt": {}, "jobs": JOBS})
    template = entities(discovery_messages(config, "photos"))["overdue"]["value_template"]
    payload = state.model_dump(mode="json")
    stale = config.jobs["photos"].effective_stale_after()
    expected = render(template, payload, T0) == "ON"
    assert is_overdue(state, stale, T0) is expected
    # A manual job (no schedule, no stale_after) is never overdue, in HA as here.
    assert not is_overdue(state, None, T0)


# the families


def test_a_finished_run_in_every_family() -> None:
    photos = finished(st.initial("photos", "Photos", "verify_then_delete"), "completed", T0)
    photos = st.scheduled(photos, T0 + timedelta(hours=6), True)
    got = scrape(snapshot({"photos": photos}, instance="lab", mqtt_connected=True))
    assert got["mqtt_backup_info"] == {
        (("instance_id", "lab"), ("version", __version__)): 1.0
    }
    assert got["mqtt_backup_mqtt_connected"] == {(): 1.0}
    values = {name: samples.get(job("photos")) for name, samples in got.items()}
    assert values["mqtt_backup_job_running"] == 0
    assert values["mqtt_backup_job_schedule_enabled"] == 1
    assert values["mqtt_backup_job_overdue"] == 0
    assert values["mqtt_backup_job_stale_after_seconds"] == 2 * 86400
    next_run = (T0 + timedelta(hours=6)).timestamp()
    assert values["mqtt_backup_job_next_run_timestamp_seconds"] == next_run
    assert values["mqtt_backup_job_last_success_timestamp_seconds"] == T0.timestamp()
    assert values["mqtt_backup_job_last_run_timestamp_seconds"] == T0.timestamp()
    assert values["mqtt_backup_job_last_run_duration_seconds"] == 120
    assert values["mqtt_backup_job_last_run_transferred_bytes"] == 3000
    assert values["mqtt_backup_job_last_run_transferred_files"] == 3
    assert values["mqtt_backup_job_last_run_deleted_files"] == 2
    assert values["mqtt_backup_job_last_run_deleted_bytes"] == 99
    assert values["mqtt_backup_job_last_run_kept_files"] == 1
    assert got["mqtt_backup_job_last_run_status"] == {
        (("job_id", "photos"), ("status", status)): float(status == "completed")
        for status in ("completed", "failed", "cancelled", "skipped", "interrupted")
    }


def test_unknown_values_have_no_series() -> None:
    got = scrape(snapshot({"manual": st.initial("manual", "manual")}))
    # No instance (a textfile), MQTT not configured, never run, no schedule.
    assert "mqtt_backup_info" not in got and "mqtt_backup_mqtt_connected" not in got
    assert got["mqtt_backup_job_running"] == {job("manual"): 0.0}
    assert got["mqtt_backup_job_overdue"] == {job("manual"): 0.0}
    for absent in ("stale_after_seconds", "next_run_timestamp_seconds",
                   "last_success_timestamp_seconds", "last_run_status", "last_run_duration_seconds",
                   "last_run_transferred_bytes"):  # fmt: skip
        assert f"mqtt_backup_job_{absent}" not in got, absent


def test_a_failed_run_after_an_old_success_is_overdue() -> None:
    ok = finished(st.initial("photos", "Photos"), "completed", T0 - timedelta(days=3))
    failed = finished(ok, "failed", T0)
    got = scrape(snapshot({"photos": failed}, mqtt_connected=False, instance="lab"))
    assert got["mqtt_backup_mqtt_connected"] == {(): 0.0}
    assert got["mqtt_backup_job_overdue"] == {job("photos"): 1.0}
    assert got["mqtt_backup_job_last_success_timestamp_seconds"] == {
        job("photos"): (T0 - timedelta(days=3)).timestamp()
    }
    assert got["mqtt_backup_job_last_run_status"][(*job("photos"), ("status", "failed"))] == 1


# the live collector: the last finished run stays while the next one goes on


def test_the_last_run_is_reported_while_the_next_runs(make_config: Any) -> None:
    config = make_config({"instance": "lab", "jobs": JOBS})
    first = finished(st.initial("photos", "Photos"), "completed", T0, files=5, nbytes=5000)
    states = {"photos": first, "manual": st.initial("manual", "manual")}
    metrics = JobMetrics(lambda: config, lambda: states, clock=lambda: T0)
    assert metrics.snapshot().last_runs == {"photos": first}
    states["photos"] = st.started(first, "r2", "command", T0 + timedelta(minutes=1))
    got = scrape(metrics.snapshot())
    assert got["mqtt_backup_job_running"][job("photos")] == 1
    assert got["mqtt_backup_job_last_run_transferred_files"][job("photos")] == 5
    assert got["mqtt_backup_job_last_run_timestamp_seconds"][job("photos")] == T0.timestamp()
    # A run that ended and was followed by another between two scrapes: the sink told it.
    second = finished(first, "failed", T0 + timedelta(hours=1), files=7)
    metrics.run_finished(second)
    states["photos"] = st.started(second, "r3", "command", T0 + timedelta(hours=2))
    got = scrape(metrics.snapshot())
    assert got["mqtt_backup_job_last_run_transferred_files"][job("photos")] == 7
    assert got["mqtt_backup_job_last_run_status"][(*job("photos"), ("status", "failed"))] == 1
    # An older state arriving late never replaces a newer one.
    metrics.run_finished(first)
    assert metrics.snapshot().last_runs["photos"] == second


def test_mqtt_connected_only_when_mqtt_is_configured(make_config: Any) -> None:
    without = make_config({"jobs": JOBS})
    metrics = JobMetrics(lambda: without, dict, mqtt_connected=lambda: True)
    assert metrics.snapshot().mqtt_connected is None
    with_mqtt = make_config({"jobs": JOBS, "mqtt": {}})
    metrics = JobMetrics(lambda: with_mqtt, dict, mqtt_connected=lambda: False)
    assert metrics.snapshot().mqtt_connected is False


# run-job's textfile


def test_the_textfile_holds_the_jobs_families_only(make_config: Any, tmp_path: Path) -> None:
    config = make_config({"instance": "lab", "jobs": JOBS})
    final = st.scheduled(
        finished(st.initial("photos", "Photos"), "completed", st.utcnow()), T0, True
    )
    path = tmp_path / "photos.prom"
    write_textfile(path, final, config)
    assert os.listdir(tmp_path) == ["photos.prom"]  # the temporary file was renamed
    got: dict[str, Any] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            got[sample.name] = (sample.labels, sample.value)
    assert "mqtt_backup_info" not in got  # several jobs' files side by side would repeat it
    # run-job schedules nothing; a next run it read from an older serve may be stale.
    assert "mqtt_backup_job_next_run_timestamp_seconds" not in got
    assert got["mqtt_backup_job_last_run_transferred_files"] == ({"job_id": "photos"}, 3)
    assert got["mqtt_backup_job_overdue"] == ({"job_id": "photos"}, 0)


def test_a_textfile_that_cannot_be_written_is_one_sentence(
    make_config: Any, tmp_path: Path
) -> None:
    config = make_config({"jobs": JOBS})
    state = finished(st.initial("photos", "Photos"), "completed", T0)
    with pytest.raises(MqttBackupError, match=r"^cannot write the metrics file .*missing/p.prom: "):
        write_textfile(tmp_path / "missing" / "p.prom", state, config)
