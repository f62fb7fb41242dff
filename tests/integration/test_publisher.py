"""Publisher against a real mosquitto: retained states, restarts, crashes, reloads."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mqtt_backup.config.models import AppConfig, MqttConfig
from mqtt_backup.engine.events import DeletionCounts, RunOutcome
from mqtt_backup.jobs.state import JobState, finished, initial, started
from mqtt_backup.mqtt.client import build_client, read_retained_states
from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
from mqtt_backup.mqtt.known_topics import MemoryKnownTopics
from mqtt_backup.mqtt.topics import Topics
from tests.integration.conftest import Broker, free_port
from tests.integration.mqtt_helpers import (
    Collector,
    retained_snapshot,
    unique_base,
    unique_topics,
)

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
JOBS = {
    "photos": {"name": "Photos", "source": "/srv/photos", "destination": "nas:photos",
               "schedule": "every 6h", "deletion": {"mode": "verify_then_delete"}},
    "docs": {"source": "/srv/docs", "destination": "nas:docs", "schedule": "0 3 * * *"},
}  # fmt: skip


@pytest.fixture
def config_for(make_config: Any):
    def make(broker: Broker, jobs: dict[str, Any] | None = None, **mqtt: Any) -> AppConfig:
        settings = {"host": broker.host, "port": broker.port, **unique_topics()}
        return make_config({"mqtt": settings | mqtt, "jobs": JOBS if jobs is None else jobs})

    return make


def completed_state(job_id: str = "photos") -> JobState:
    state = started(initial(job_id, "Photos", "verify_then_delete"), "run-1", "schedule", NOW)
    outcome = RunOutcome(
        status="completed",
        deletion=DeletionCounts(files_verified=3, files_deleted=3, bytes_deleted=300, files_kept=0),
    )
    return finished(state, outcome, NOW)


def failed_state(job_id: str = "docs") -> JobState:
    state = started(initial(job_id, "docs"), "run-2", "schedule", NOW)
    return finished(state, RunOutcome(status="failed", error="rclone could not reach nas"), NOW)


def running(publisher_state: JobState, percent: float) -> JobState:
    return publisher_state.model_copy(
        update={"percent": percent, "bytes_transferred": int(percent)}
    )


@pytest.fixture
def publishers():
    made: list[DaemonPublisher] = []

    def track(p: DaemonPublisher) -> DaemonPublisher:
        made.append(p)
        return p

    yield track
    for p in made:
        p.stop(timeout=2)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_late_subscriber_gets_retained_terminal_states(
    mosquitto, config_for, publishers, protocol
) -> None:
    config = config_for(mosquitto, protocol=protocol)
    publisher = publishers(DaemonPublisher(config, republish_delay=(0, 0.1)))
    publisher.start()
    assert publisher.wait_connected(5)
    publisher.publish_state(completed_state())
    publisher.publish_state(failed_state())
    publisher.stop()

    states = read_retained_states(config, timeout=3)
    assert states is not None
    photos, docs = states["photos"], states["docs"]
    assert (photos.status, photos.percent, photos.phase) == ("completed", 100, "done")
    assert (photos.deletion.files_deleted, photos.deletion.bytes_deleted) == (3, 300)
    assert docs.status == "failed" and docs.error == "rclone could not reach nas"
    topics = Topics(config.mqtt, config.instance)
    raw = retained_snapshot(mosquitto.host, mosquitto.port, f"{topics.base}/#")
    assert raw[topics.availability] == b"offline"
    assert json.loads(raw[topics.state("photos")])["finished_at"] == "2026-11-29T03:00:00Z"


def test_read_retained_states_without_broker(make_config) -> None:
    config = make_config({"mqtt": {"port": free_port()}})
    assert read_retained_states(config, timeout=1) is None


def test_terminal_state_survives_broker_restart(broker_factory, config_for, publishers) -> None:
    broker = broker_factory()
    config = config_for(broker)
    topics = Topics(config.mqtt, config.instance)
    publisher = publishers(DaemonPublisher(config))
    publisher.start()
    assert publisher.wait_connected(5)
    run = started(initial("photos", "Photos", "verify_then_delete"), "run-1", "schedule", NOW)
    publisher.publish_state(run)

    broker.stop()  # no persistence: every retained message is gone with it
    for percent in (10, 50, 90):
        publisher.publish_state(running(run, percent))
    publisher.publish_state(completed_state())
    broker.start()

    collector = Collector(broker.host, broker.port, [topics.state("photos")])
    try:
        message = collector.wait_message(
            topics.state("photos"), lambda m: m.json()["status"] == "completed", timeout=15
        )
        assert message.json()["percent"] == 100
    finally:
        collector.close()
    raw = retained_snapshot(broker.host, broker.port, f"{topics.base}/#")
    assert json.loads(raw[topics.state("photos")])["status"] == "completed"
    assert raw[topics.availability] == b"online"


DAEMON = textwrap.dedent(
    """
    import json, sys, time
    from mqtt_backup.config.models import AppConfig
    from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
    config = AppConfig.model_validate(json.loads(sys.argv[1]))
    publisher = DaemonPublisher(config)
    publisher.start()
    publisher.wait_connected(10)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_killed_daemon_leaves_offline(mosquitto, config_for) -> None:
    base = unique_base()
    raw = {"instance": "test", "mqtt": {"host": mosquitto.host, "port": mosquitto.port,
           "base_topic": base, "discovery_prefix": f"{base}_ha"}, "jobs": JOBS}  # fmt: skip
    config = AppConfig.model_validate(raw)
    topics = Topics(config.mqtt, config.instance)
    collector = Collector(mosquitto.host, mosquitto.port, [topics.availability])
    process = subprocess.Popen(
        [sys.executable, "-c", DAEMON, json.dumps(raw)],
        stdout=subprocess.PIPE,
        cwd=os.getcwd(),
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        collector.wait_message(topics.availability, lambda m: m.payload == b"online")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)
        collector.wait_message(topics.availability, lambda m: m.payload == b"offline", timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        collector.close()
    raw = retained_snapshot(mosquitto.host, mosquitto.port, topics.availability)
    assert raw == {topics.availability: b"offline"}


def test_progress_is_throttled_but_status_changes_are_not(
    mosquitto, config_for, publishers
) -> None:
    config = config_for(mosquitto, progress_interval="1s")
    topics = Topics(config.mqtt, config.instance)
    collector = Collector(mosquitto.host, mosquitto.port, [topics.state("photos")])
    publisher = publishers(DaemonPublisher(config))
    publisher.start()
    assert publisher.wait_connected(5)
    run = started(initial("photos", "Photos", "verify_then_delete"), "run-1", "schedule", NOW)
    publisher.publish_state(run)
    collector.wait_message(topics.state("photos"), lambda m: m.json()["status"] == "running")
    begin = time.monotonic()
    for step in range(1, 41):  # 40 progress updates in about 0.4 s
        publisher.publish_state(running(run, step))
        time.sleep(0.01)
    # The newest progress is not lost: it goes out when the interval has passed.
    last = collector.wait_message(topics.state("photos"), lambda m: m.json()["percent"] == 40, 3)
    progress = [m for m in collector.on(topics.state("photos")) if m.json()["percent"] > 0]
    assert len(progress) <= 2, [m.json()["percent"] for m in progress]
    assert last.at - begin >= 0.9
    # A status change goes out at once, carrying the newest progress.
    publisher.publish_state(running(run, 41).model_copy(update={"phase": "verifying"}))
    sent = time.monotonic()
    phase = collector.wait_message(
        topics.state("photos"), lambda m: m.json()["phase"] == "verifying"
    )
    assert phase.at - sent < 0.5 and phase.json()["percent"] == 41
    collector.close()


def test_removed_job_is_cleared_also_across_restarts(mosquitto, config_for, publishers) -> None:
    config = config_for(mosquitto)
    topics = Topics(config.mqtt, config.instance)
    known = MemoryKnownTopics()
    first = DaemonPublisher(config, known_topics=known)
    first.start()
    assert first.wait_connected(5)
    first.publish_state(completed_state())
    first.publish_state(failed_state())
    first.stop()
    before = retained_snapshot(mosquitto.host, mosquitto.port, "#")
    docs_topics = known.published_topics()["docs"]
    assert topics.state("docs") in docs_topics and all(t in before for t in docs_topics)

    # A restart with "docs" gone from the config: its retained topics are cleared.
    shrunk = config.model_copy(update={"jobs": {"photos": config.jobs["photos"]}})
    second = publishers(DaemonPublisher(shrunk, known_topics=known))
    second.start()
    assert second.wait_connected(5)
    second.set_jobs({"photos": completed_state()})

    def cleared() -> dict[str, bytes]:
        return retained_snapshot(mosquitto.host, mosquitto.port, "#")

    deadline = time.monotonic() + 5
    while any(t in cleared() for t in docs_topics):
        assert time.monotonic() < deadline, "docs topics were not cleared"
    after = cleared()
    assert "docs" not in known.published_topics()
    assert topics.state("photos") in after
    assert all(t in after for t in known.published_topics()["photos"])

    # And within one process: set_jobs() without "photos" clears it at once.
    second.set_jobs({})
    deadline = time.monotonic() + 5
    while topics.state("photos") in cleared():
        assert time.monotonic() < deadline, "photos was not cleared"


def test_client_socket_sends_without_nagle_delay(mosquitto: Broker) -> None:
    # A state must not wait for the previous packet's ACK (up to 40 ms with a delayed ACK).
    client = build_client(MqttConfig(host=mosquitto.host, port=mosquitto.port), "nodelay-test")
    client.connect(mosquitto.host, mosquitto.port)
    try:
        sock = client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        client.disconnect()
