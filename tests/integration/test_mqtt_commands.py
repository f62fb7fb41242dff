"""Commands over MQTT: valid ones reach the app, bad ones change nothing and break nothing."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
from mqtt_backup.mqtt.publisher import Publisher
from mqtt_backup.mqtt.topics import Topics
from tests.integration.mqtt_helpers import Collector, unique_base, unique_topics

pytestmark = pytest.mark.timeout(60)
JOBS = {"photos": {"source": "/srv/photos", "destination": "nas:photos", "schedule": "every 1h"}}


def start(make_config: Any, broker: Any, **mqtt: Any) -> tuple[Publisher, Topics, queue.Queue]:
    settings = {"host": broker.host, "port": broker.port, **unique_topics()} | mqtt
    config = make_config({"mqtt": settings, "jobs": JOBS})
    received: queue.Queue[tuple[str, str, bytes, str]] = queue.Queue()

    def on_command(job_id: str, command: str, payload: bytes) -> None:
        received.put((job_id, command, payload, threading.current_thread().name))

    publisher = DaemonPublisher(config, on_command=on_command)
    publisher.start()
    assert publisher.wait_connected(5)
    topics = Topics(config.mqtt, config.instance)
    # The publisher subscribes before it publishes "online" on the same connection, so once
    # "online" is seen, the broker has its subscriptions and no command can be missed.
    watcher = Collector(broker.host, broker.port, [topics.availability])
    watcher.wait_message(topics.availability, lambda m: m.payload == b"online")
    watcher.close()
    return publisher, topics, received


def test_valid_commands_reach_the_handler_on_a_worker_thread(mosquitto, make_config) -> None:
    publisher, topics, received = start(make_config, mosquitto)
    client = Collector(mosquitto.host, mosquitto.port, [])
    try:
        client.publish(topics.command("photos", "run"), "PRESS")
        client.publish(topics.command("photos", "enabled/set"), "OFF")
        client.publish(topics.command("photos", "cancel"), "")
        got = [received.get(timeout=5) for _ in range(3)]
        assert [g[:3] for g in got] == [
            ("photos", "run", b"PRESS"),
            ("photos", "enabled/set", b"OFF"),
            ("photos", "cancel", b""),
        ]
        assert {g[3] for g in got} == {"mqtt-backup-commands"}
    finally:
        client.close()
        publisher.stop()


def test_bad_commands_are_ignored_and_the_publisher_keeps_working(
    mosquitto, make_config, caplog
) -> None:
    publisher, topics, received = start(make_config, mosquitto)
    client = Collector(mosquitto.host, mosquitto.port, [topics.state("photos")])
    try:
        client.publish(topics.command("photos", "run"), b"x" * (1024 * 1024))
        client.publish(topics.command("photos", "run"), b"\xff\xfe\x00binary")
        client.publish(topics.command("nosuchjob", "run"), "PRESS")
        client.publish(topics.command("photos", "enabled/set"), "maybe")
        client.publish(f"{topics.base}/jobs/photos/format-disk", "PRESS")
        # A valid command after all of that still arrives, and it is the only one.
        client.publish(topics.command("photos", "cancel"), "PRESS")
        assert received.get(timeout=5)[:2] == ("photos", "cancel")
        assert received.empty()
        assert publisher.connected
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("1048576 bytes" in w for w in warnings)
        assert any("not UTF-8" in w for w in warnings)
        assert any("no such job" in w for w in warnings)
        assert any("neither ON nor OFF" in w for w in warnings)
        # And it still publishes.
        from mqtt_backup.jobs.state import initial

        publisher.publish_state(initial("photos", "photos"))
        client.wait_message(topics.state("photos"), lambda m: m.json()["status"] == "idle")
    finally:
        client.close()
        publisher.stop()


def test_commands_off_means_no_subscription(mosquitto, make_config) -> None:
    publisher, topics, received = start(make_config, mosquitto, allow_commands=False)
    client = Collector(mosquitto.host, mosquitto.port, [topics.availability])
    try:
        client.publish(topics.command("photos", "run"), "PRESS")
        # Our own round trip through the broker bounds when a command would have arrived.
        client.publish(topics.availability, "online", retain=True)
        client.wait_message(topics.availability, lambda m: not m.retain)
        assert received.empty()
    finally:
        client.close()
        publisher.stop()
    assert received.empty()


def test_a_retained_command_does_not_run_again_on_connect(mosquitto, make_config, caplog) -> None:
    base = unique_base()
    setup = Collector(mosquitto.host, mosquitto.port, [])
    # Someone published "run" retained: it must not start a run at every (re)connect.
    setup.publish(f"{base}/test/jobs/photos/run", "PRESS", retain=True)
    try:
        publisher, topics, received = start(make_config, mosquitto, base_topic=base)
        setup.publish(topics.command("photos", "cancel"), "PRESS")
        assert received.get(timeout=5)[:2] == ("photos", "cancel")
        assert received.empty()
        assert any("retained" in r.getMessage() for r in caplog.records)
        publisher.stop()
    finally:
        setup.publish(f"{base}/test/jobs/photos/run", b"", retain=True)
        setup.close()
