"""Discovery on a real broker, Home Assistant's birth message, and one-shot availability."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqtt_backup.jobs.state import initial
from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
from mqtt_backup.mqtt.publisher import Publisher
from mqtt_backup.mqtt.topics import Topics
from tests.integration.mqtt_helpers import Collector, retained_snapshot, unique_topics

pytestmark = pytest.mark.timeout(60)
JOBS = {
    "photos": {"name": "Photos", "source": "/a", "destination": "nas:a", "schedule": "every 6h"},
    "docs": {"source": "/b", "destination": "nas:b"},
}


def make(make_config: Any, broker: Any, **mqtt: Any):
    settings = {"host": broker.host, "port": broker.port, **unique_topics()}
    config = make_config({"mqtt": settings | mqtt, "jobs": JOBS})
    return config, Topics(config.mqtt, config.instance)


def components(payloads: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entity config with its shared device/origin/availability, in either format."""
    out = []
    for payload in payloads.values():
        shared = {k: v for k, v in payload.items() if k != "cmps"}
        for entity in payload.get("cmps", {None: {}}).values() if "cmps" in payload else [{}]:
            out.append(shared | entity)
    return out


@pytest.mark.parametrize("fmt", ["device", "component"])
def test_every_discovery_entity_is_complete(mosquitto, make_config, fmt) -> None:
    config, topics = make(make_config, mosquitto, discovery_format=fmt)
    publisher = DaemonPublisher(config)
    publisher.start()
    assert publisher.wait_connected(5)
    publisher.set_jobs({job: initial(job, config.display_name(job)) for job in config.jobs})
    publisher.stop()

    retained = retained_snapshot(mosquitto.host, mosquitto.port, f"{topics.prefix}/#")
    ours = {t: json.loads(p) for t, p in retained.items() if f"/{config.instance}" in t and p}
    published = retained_snapshot(mosquitto.host, mosquitto.port, f"{topics.base}/#")
    entities = [e for e in components(ours)]
    assert len(entities) == 2 * 19 + 1  # two jobs and the instance's service entity
    unique_ids = [e["unique_id"] for e in entities]
    assert len(unique_ids) == len(set(unique_ids))
    for entity in entities:
        assert entity["device"]["identifiers"]
        assert entity["origin"]["name"] == "mqtt-backup" and "sw_version" in entity["origin"]
        topic = entity.get("state_topic")
        if topic is not None and not topic.endswith("/event"):
            assert topic in published, f"{entity['unique_id']} reads an unpublished {topic}"
        if entity["unique_id"] != f"{config.instance}_service":
            assert entity["availability"][0]["topic"] == topics.availability
            assert entity["device"]["via_device"] == f"mqtt_backup_{config.instance}"
    if fmt == "device":
        assert set(ours) == {
            topics.instance_device_discovery(),
            topics.device_discovery("photos"),
            topics.device_discovery("docs"),
        }


def test_home_assistant_birth_triggers_republish(mosquitto, make_config) -> None:
    config, topics = make(make_config, mosquitto)
    publisher = DaemonPublisher(config, republish_delay=(0.0, 0.2))
    publisher.publish_state(initial("photos", "Photos"))
    publisher.publish_state(initial("docs", "docs"))
    watched = [topics.device_discovery("photos"), topics.state("docs")]
    collector = Collector(mosquitto.host, mosquitto.port, watched)
    publisher.start()
    try:
        # One connect sends each topic once (live, or retained if we subscribed later)...
        for topic in watched:
            collector.wait_for(lambda _m, t=topic: len(collector.on(t)) == 1)
        collector.publish(topics.ha_status, "online")  # not retained, like HA's own
        # ...and HA's birth message makes it send them again.
        for topic in watched:
            collector.wait_for(lambda _m, t=topic: len(collector.on(t)) == 2)
    finally:
        collector.close()
        publisher.stop()


def test_oneshot_shows_entities_without_daemon_and_never_says_offline(
    mosquitto, make_config
) -> None:
    config, topics = make(make_config, mosquitto)
    collector = Collector(mosquitto.host, mosquitto.port, [topics.availability])
    oneshot = Publisher(config, job_ids=["photos"])
    oneshot.start()
    oneshot.publish_state(initial("photos", "Photos"))
    collector.wait_message(topics.availability, lambda m: m.payload == b"online")
    oneshot.stop()
    raw = retained_snapshot(mosquitto.host, mosquitto.port, f"{topics.base}/#")
    assert raw[topics.availability] == b"online"
    assert topics.state("photos") in raw and topics.state("docs") not in raw

    # With a daemon's retained "offline", a one-shot run leaves availability alone.
    collector.publish(topics.availability, "offline", retain=True)
    again = Publisher(config, job_ids=["photos"])
    again.start()
    again.publish_state(initial("photos", "Photos"))
    again.stop()
    collector.close()
    raw = retained_snapshot(mosquitto.host, mosquitto.port, topics.availability)
    assert raw == {topics.availability: b"offline"}
    assert [m.payload for m in collector.on(topics.availability)][-1] == b"offline"
