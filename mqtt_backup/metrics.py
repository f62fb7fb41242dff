"""Prometheus metrics of the jobs, built from their states: ``/metrics`` and run-job's textfile.

The families are built by a pure function (``families``) from a ``Snapshot``: the jobs' live
states, each job's last finished run, and the settings that decide "overdue". Nothing here
reads the history database or waits for a run: a scrape copies the executor's states (a
dictionary copy under its lock) and formats them.

Every per-job series has the label ``job_id``, not ``job``: Prometheus attaches ``job`` and
``instance`` to every scraped series itself and would rename ours to ``exported_job``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from mqtt_backup import __version__
from mqtt_backup.config.models import AppConfig
from mqtt_backup.errors import MqttBackupError
from mqtt_backup.homeassistant.discovery import FUTURE_SUCCESS_SLACK
from mqtt_backup.jobs.state import STATUSES, TERMINAL, JobState, newer, utcnow
from mqtt_backup.sinks import Sink

PREFIX = "mqtt_backup"
# The statuses a finished run can have (from the state's vocabulary, so a new ending gets
# its series too); each gets a series, 1 for the last run's.
LAST_STATUSES = tuple(status for status in STATUSES if status in TERMINAL)
JOB = ["job_id"]


def is_overdue(state: JobState, stale_after: timedelta | None, now: datetime) -> bool:
    """Home Assistant's Overdue sensor, in Python (homeassistant/discovery.py has the template).

    A job without ``stale_after`` (manual only) is never overdue. One that succeeded is
    overdue when its last success is older than ``stale_after``, or lies more than an hour
    ahead of ``now`` (recorded by a clock that was wrong, it proves nothing). One that never
    succeeded is overdue once a run has ended; before its first run it is not.
    """
    if stale_after is None:
        return False
    if state.last_success_at is not None:
        age = (now - state.last_success_at).total_seconds()
        return age > int(stale_after.total_seconds()) or age < -FUTURE_SUCCESS_SLACK
    return state.finished_at is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the metrics are made of, read at one moment."""

    now: datetime
    states: Mapping[str, JobState]
    # Each job's last finished run: its current state once it ended, the one before while a
    # new run is queued or running (a new run resets the counters of the state).
    last_runs: Mapping[str, JobState]
    stale_after: Mapping[str, timedelta | None]
    instance: str | None = None  # None: no instance series (a textfile of one job)
    mqtt_connected: bool | None = None  # None: MQTT is not configured
    version: str = field(default=__version__)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"{PREFIX}_{name}", documentation, labels=JOB if labels is None else labels
    )


def families(snapshot: Snapshot) -> list[Metric]:
    """The metric families of a snapshot; a value that is unknown has no series."""
    out: list[Metric] = []
    if snapshot.instance is not None:
        out.append(
            InfoMetricFamily(
                PREFIX,
                "mqtt-backup's version and instance id",
                value={"version": snapshot.version, "instance_id": snapshot.instance},
            )
        )
        if snapshot.mqtt_connected is not None:
            connected = _gauge("mqtt_connected", "1 while connected to the MQTT broker", [])
            connected.add_metric([], float(snapshot.mqtt_connected))
            out.append(connected)
    out += _job_families(snapshot)
    # A family without samples says nothing, and some readers of textfiles reject it.
    return [family for family in out if family.samples]


def _job_families(snapshot: Snapshot) -> list[Metric]:
    running = _gauge("job_running", "1 while a run of the job is going on")
    enabled = _gauge("job_schedule_enabled", "1 when the job's schedule switch is on")
    overdue = _gauge(
        "job_overdue", "1 when the last success is older than stale_after (HA's Overdue sensor)"
    )
    stale = _gauge(
        "job_stale_after_seconds", "how old the last success may get before the job is overdue"
    )
    next_run = _gauge("job_next_run_timestamp_seconds", "when the schedule fires next")
    success = _gauge(
        "job_last_success_timestamp_seconds", "when the last successful (non-dry) run ended"
    )
    status = _gauge(
        "job_last_run_status", "1 for the status the last finished run ended with", [*JOB, "status"]
    )
    finished = _gauge("job_last_run_timestamp_seconds", "when the last finished run ended")
    duration = _gauge("job_last_run_duration_seconds", "how long the last finished run took")
    sent_bytes = _gauge("job_last_run_transferred_bytes", "bytes the last finished run transferred")
    sent_files = _gauge("job_last_run_transferred_files", "files the last finished run transferred")
    deleted_files = _gauge(
        "job_last_run_deleted_files", "source files the last finished run deleted once verified"
    )
    deleted_bytes = _gauge(
        "job_last_run_deleted_bytes", "bytes of the source files the last finished run deleted"
    )
    kept = _gauge("job_last_run_kept_files", "source files the last finished run did not delete")
    for job_id, state in sorted(snapshot.states.items()):
        label = [job_id]
        limit = snapshot.stale_after.get(job_id)
        running.add_metric(label, float(state.status == "running"))
        enabled.add_metric(label, float(state.enabled))
        overdue.add_metric(label, float(is_overdue(state, limit, snapshot.now)))
        if limit is not None:
            stale.add_metric(label, limit.total_seconds())
        for gauge, moment in ((next_run, state.next_run_at), (success, state.last_success_at)):
            if moment is not None:
                gauge.add_metric(label, moment.timestamp())
        last = snapshot.last_runs.get(job_id)
        if last is None or last.status not in TERMINAL:
            continue
        for value in LAST_STATUSES:
            status.add_metric([job_id, value], float(last.status == value))
        if last.finished_at is not None:
            finished.add_metric(label, last.finished_at.timestamp())
        if last.duration_seconds is not None:
            duration.add_metric(label, last.duration_seconds)
        sent_bytes.add_metric(label, last.bytes_transferred)
        sent_files.add_metric(label, last.files_transferred)
        deleted_files.add_metric(label, last.deletion.files_deleted)
        deleted_bytes.add_metric(label, last.deletion.bytes_deleted)
        kept.add_metric(label, last.deletion.files_kept)
    return [
        running, enabled, overdue, stale, next_run, success, status, finished, duration,
        sent_bytes, sent_files, deleted_files, deleted_bytes, kept,
    ]  # fmt: skip


def stale_after_of(config: AppConfig) -> dict[str, timedelta | None]:
    return {job_id: job.effective_stale_after() for job_id, job in config.jobs.items()}


class JobMetrics(Sink, Collector):
    """A prometheus_client collector of a running serve's jobs, and a sink of finished runs.

    ``collect`` is called on the HTTP server's threads; the sink calls on the fan-out's. Both
    only touch a small dictionary of each job's last finished state, under a lock.
    """

    name = "metrics"

    def __init__(
        self,
        config: Callable[[], AppConfig],
        states: Callable[[], Mapping[str, JobState]],
        mqtt_connected: Callable[[], bool | None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._config = config
        self._states = states
        self._mqtt_connected = mqtt_connected
        self._clock = clock
        self._lock = threading.Lock()
        self._finished: dict[str, JobState] = {}

    def run_finished(self, state: JobState) -> None:
        self._remember([state])

    def _remember(self, states: Iterable[JobState]) -> None:
        with self._lock:
            for state in states:
                if state.status in TERMINAL:
                    known = self._finished.get(state.job_id)
                    self._finished[state.job_id] = state if known is None else newer(known, state)

    def snapshot(self) -> Snapshot:
        config = self._config()
        states = self._states()
        # A terminal state seen here counts too: a run that ended before this collector was
        # built (or was marked interrupted at start-up) never reaches run_finished.
        self._remember(states.values())
        with self._lock:
            last = {job: self._finished[job] for job in states if job in self._finished}
        return Snapshot(
            now=self._clock(),
            states=states,
            last_runs=last,
            stale_after=stale_after_of(config),
            instance=config.instance,
            mqtt_connected=self._mqtt_connected() if config.mqtt is not None else None,
        )

    def collect(self) -> Iterable[Metric]:
        return families(self.snapshot())


def registry(collector: JobMetrics) -> CollectorRegistry:
    """A registry of its own (never the library's global one) with the jobs' metrics."""
    own = CollectorRegistry(auto_describe=False)
    own.register(collector)
    ProcessCollector(registry=own)  # memory, CPU, open files, start time of the serve
    return own


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def write_textfile(path: Path, state: JobState, config: AppConfig) -> None:
    """Write one job's metrics for node_exporter's textfile collector, atomically.

    The file is written beside ``path`` under another name and renamed over it, so the
    collector never reads half a file. Instance series are left out: several jobs' files
    side by side would repeat them, which node_exporter refuses. Raises MqttBackupError.
    """
    # run-job schedules nothing: a next run read from a serve's older state may be stale.
    state = state.model_copy(update={"next_run_at": None})
    snapshot = Snapshot(
        now=utcnow(),
        states={state.job_id: state},
        last_runs={state.job_id: state},
        stale_after={state.job_id: config.jobs[state.job_id].effective_stale_after()},
    )
    own = CollectorRegistry(auto_describe=False)
    own.register(_Fixed(families(snapshot)))
    try:
        write_to_textfile(os.fspath(path), own)
    except OSError as exc:
        raise MqttBackupError(
            f"cannot write the metrics file {path}: {exc.strerror or exc}"
        ) from None
