"""Topic names and command parsing."""

from __future__ import annotations

import pytest

from mqtt_backup.config.models import MqttConfig
from mqtt_backup.mqtt.topics import Topics, command_rejection


@pytest.fixture
def topics() -> Topics:
    return Topics(MqttConfig(base_topic="mqtt_backup", discovery_prefix="homeassistant"), "lab")


def test_names(topics: Topics) -> None:
    assert topics.availability == "mqtt_backup/lab/availability"
    assert topics.state("photos") == "mqtt_backup/lab/jobs/photos/state"
    assert topics.event("photos") == "mqtt_backup/lab/jobs/photos/event"
    assert topics.command("photos", "run") == "mqtt_backup/lab/jobs/photos/run"
    assert topics.command("photos", "enabled/set") == "mqtt_backup/lab/jobs/photos/enabled/set"
    assert topics.ha_status == "homeassistant/status"
    assert topics.device_discovery("photos") == "homeassistant/device/lab_photos/config"
    assert (
        topics.component_discovery("sensor", "photos", "status")
        == "homeassistant/sensor/lab_photos/status/config"
    )
    assert topics.state_wildcard == "mqtt_backup/lab/jobs/+/state"
    assert topics.command_subscriptions() == [
        "mqtt_backup/lab/jobs/+/run",
        "mqtt_backup/lab/jobs/+/cancel",
        "mqtt_backup/lab/jobs/+/enabled/set",
    ]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("mqtt_backup/lab/jobs/photos/run", ("photos", "run")),
        ("mqtt_backup/lab/jobs/photos/cancel", ("photos", "cancel")),
        ("mqtt_backup/lab/jobs/my-job_2/enabled/set", ("my-job_2", "enabled/set")),
        ("mqtt_backup/lab/jobs/photos/state", None),
        ("mqtt_backup/lab/jobs/photos/enabled", None),
        ("mqtt_backup/lab/jobs//run", None),
        ("mqtt_backup/lab/jobs/Photos/run", None),
        ("mqtt_backup/lab/jobs/ph+tos/run", None),
        ("mqtt_backup/other/jobs/photos/run", None),
        ("mqtt_backup/lab/jobs/photos/run/extra", None),
    ],
)
def test_parse_command(topics: Topics, topic: str, expected: object) -> None:
    assert topics.parse_command(topic) == expected


@pytest.mark.parametrize(
    ("command", "payload", "known", "retained", "reason"),
    [
        ("run", b"PRESS", True, False, None),
        ("run", b"", True, False, None),
        ("enabled/set", b"ON", True, False, None),
        ("enabled/set", b"OFF\n", True, False, None),
        ("enabled/set", b"on", True, False, "neither ON nor OFF"),
        ("run", b"PRESS", False, False, "no such job"),
        ("run", b"PRESS", True, True, "retained"),
        ("run", b"x" * 1025, True, False, "1025 bytes"),
        ("run", b"\xff\xfe", True, False, "not UTF-8"),
    ],
)
def test_command_rejection(
    command: str, payload: bytes, known: bool, retained: bool, reason: str | None
) -> None:
    got = command_rejection(command, payload, known_job=known, retained=retained)
    assert (got is None) if reason is None else (got is not None and reason in got)
