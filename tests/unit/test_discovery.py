"""Home Assistant discovery payloads, with the templates rendered the way HA renders them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import jinja2
import pytest

from mqtt_backup import __version__
from mqtt_backup.homeassistant.discovery import (
    discovery_messages,
    event_message,
    instance_discovery_messages,
    job_retained_topics,
    removal_messages,
)
from mqtt_backup.jobs.state import JobState, Status, initial
from mqtt_backup.mqtt.topics import Topics

JOBS = {
    "photos": {"name": "Photos", "source": "/a", "destination": "nas:a", "schedule": "every 6h",
               "stale_after": "2d", "deletion": {"mode": "verify_then_delete"}},
    "manual": {"source": "/b", "destination": "nas:b"},
}  # fmt: skip
TIMESTAMPS = {"last_run", "last_success", "next_run"}


@pytest.fixture
def config(make_config: Any) -> Any:
    return make_config({"instance": "lab", "mqtt": {}, "jobs": JOBS})


def entities(messages: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for message in messages:
        payload = json.loads(message.payload)
        if "cmps" in payload:
            shared = {k: v for k, v in payload.items() if k != "cmps"}
            out |= {key: shared | c for key, c in payload["cmps"].items()}
        else:
            out[message.topic.split("/")[-2]] = payload | {"p": message.topic.split("/")[1]}
    return out


def render(template: str, payload: dict[str, Any], now: datetime) -> str:
    """Like HA: ``value_json``, ``now()`` and ``as_datetime``; text ``None`` means unknown."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - renders test data only
    env.filters["as_datetime"] = datetime.fromisoformat
    env.globals |= {"now": lambda: now, "as_datetime": datetime.fromisoformat}
    return env.from_string(template).render(value_json=payload, value=json.dumps(payload))


@pytest.mark.parametrize("fmt", ["device", "component"])
def test_entities_and_shared_blocks(make_config: Any, fmt: str) -> None:
    config = make_config({"instance": "lab", "mqtt": {"discovery_format": fmt}, "jobs": JOBS})
    messages = discovery_messages(config, "photos")
    assert all(m.retain and m.qos == 1 for m in messages)
    found = entities(messages)
    assert len(found) == 19
    assert len({e["unique_id"] for e in found.values()}) == 19
    assert all(e["unique_id"] == f"lab_photos_{key}" for key, e in found.items())
    for entity in found.values():
        assert entity["origin"] == {
            "name": "mqtt-backup",
            "sw_version": __version__,
            "support_url": "https://github.com/mqtt-backup/mqtt-backup",
        }
        assert entity["device"]["identifiers"] == ["mqtt_backup_lab_photos"]
        assert entity["device"]["via_device"] == "mqtt_backup_lab"
        assert entity["availability"] == [
            {"topic": "mqtt_backup/lab/availability", "payload_available": "online",
             "payload_not_available": "offline"}
        ]  # fmt: skip
        assert "json_attributes_topic" not in entity
    assert found["status"]["options"] == [
        "idle", "queued", "running", "completed", "failed", "cancelled", "skipped", "interrupted"
    ]  # fmt: skip
    assert found["phase"]["options"] == [
        "before_hook", "transferring", "verifying", "deleting", "on_failure_hook", "after_hook",
        "done",
    ]  # fmt: skip
    assert found["run_finished"]["event_types"] == [
        "completed", "failed", "cancelled", "skipped", "interrupted"
    ]  # fmt: skip
    assert found["speed"]["state_class"] == "measurement"
    assert found["speed"]["device_class"] == "data_rate"
    for key in TIMESTAMPS:
        assert found[key]["device_class"] == "timestamp" and "state_class" not in found[key]
    assert found["run_finished"]["p"] == "event"
    assert found["run_finished"]["state_topic"] == "mqtt_backup/lab/jobs/photos/event"
    assert found["schedule_enabled"]["command_topic"] == "mqtt_backup/lab/jobs/photos/enabled/set"
    assert found["error"]["entity_category"] == "diagnostic"
    if fmt == "device":
        assert [m.topic for m in messages] == ["homeassistant/device/lab_photos/config"]
    else:
        assert "homeassistant/binary_sensor/lab_photos/problem/config" in {
            m.topic for m in messages
        }


def test_without_commands_no_buttons_or_switch(make_config: Any) -> None:
    config = make_config({"instance": "lab", "mqtt": {"allow_commands": False}, "jobs": JOBS})
    found = entities(discovery_messages(config, "photos"))
    assert not {"run", "cancel", "schedule_enabled"} & set(found)


def test_discovery_off_or_no_mqtt(make_config: Any) -> None:
    assert (
        discovery_messages(make_config({"mqtt": {"discovery": False}, "jobs": JOBS}), "photos")
        == []
    )
    assert instance_discovery_messages(make_config({"jobs": JOBS})) == []


def test_instance_device(config: Any) -> None:
    [message] = instance_discovery_messages(config)
    payload = json.loads(message.payload)
    assert message.topic == "homeassistant/device/lab/config"
    assert payload["device"]["identifiers"] == ["mqtt_backup_lab"]
    assert payload["cmps"]["service"]["state_topic"] == "mqtt_backup/lab/availability"
    assert "availability" not in payload


def state_payload(**update: Any) -> dict[str, Any]:
    state = initial("photos", "Photos", "verify_then_delete").model_copy(update=update)
    return json.loads(state.to_json())


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_templates_turn_nulls_into_unknown(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    payload = state_payload()  # never run: every time is null
    for key in (*TIMESTAMPS, "eta", "duration", "phase", "error"):
        assert render(found[key]["value_template"], payload, NOW) == "None", key
    assert render(found["status"]["value_template"], payload, NOW) == "idle"
    assert render(found["problem"]["value_template"], payload, NOW) == "OFF"
    assert render(found["overdue"]["value_template"], payload, NOW) == "OFF"
    assert render(found["schedule_enabled"]["value_template"], payload, NOW) == "ON"
    # An older or foreign payload without some fields does not break the templates either.
    for key in ("files_deleted", "space_freed", "last_success", "overdue", "problem"):
        assert render(found[key]["value_template"], {}, NOW) in ("None", "OFF"), key


def test_templates_read_a_finished_run(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    finished_at = NOW - timedelta(hours=1)
    payload = state_payload(
        status="failed", last_result="failed", finished_at=finished_at, error="x" * 400,
        last_success_at=NOW - timedelta(days=3), enabled=False, percent=42.5,
    )  # fmt: skip
    payload["deletion"]["bytes_deleted"] = 2048
    assert render(found["last_run"]["value_template"], payload, NOW) == "2026-11-29T11:00:00Z"
    assert render(found["problem"]["value_template"], payload, NOW) == "ON"
    assert render(found["overdue"]["value_template"], payload, NOW) == "ON"  # 3 days > 2 days
    assert render(found["schedule_enabled"]["value_template"], payload, NOW) == "OFF"
    assert render(found["progress"]["value_template"], payload, NOW) == "42.5"
    assert render(found["space_freed"]["value_template"], payload, NOW) == "2048"
    assert len(render(found["error"]["value_template"], payload, NOW)) <= 255
    payload["last_success_at"] = "2026-11-28T12:00:00Z"
    assert render(found["overdue"]["value_template"], payload, NOW) == "OFF"


def test_overdue_for_never_succeeded_and_manual_jobs(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    ran_and_failed = state_payload(finished_at=NOW, last_result="failed", status="failed")
    assert render(found["overdue"]["value_template"], ran_and_failed, NOW) == "ON"
    manual = entities(discovery_messages(config, "manual"))
    assert manual["overdue"]["value_template"] == "OFF"


def test_a_skipped_run_is_no_problem_but_stays_overdue(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    skipped = state_payload(
        status="skipped", last_result="skipped", finished_at=NOW, error="skipped: disk absent",
        last_success_at=NOW - timedelta(days=3),
    )  # fmt: skip
    assert render(found["problem"]["value_template"], skipped, NOW) == "OFF"
    # The disk that is never there: the last success ages on, and Overdue turns on.
    assert render(found["overdue"]["value_template"], skipped, NOW) == "ON"
    assert render(found["status"]["value_template"], skipped, NOW) == "skipped"


def test_a_completed_run_whose_after_hook_failed_is_a_problem(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    warned = state_payload(
        status="completed", last_result="completed", finished_at=NOW, last_success_at=NOW,
        error="after hook 1 (umount) exited 32: target is busy",
    )  # fmt: skip
    assert render(found["problem"]["value_template"], warned, NOW) == "ON"
    assert render(found["overdue"]["value_template"], warned, NOW) == "OFF"


def test_a_last_success_in_the_future_is_overdue(config: Any) -> None:
    # Recorded while the backup host's clock ran three years ahead: it proves nothing.
    template = entities(discovery_messages(config, "photos"))["overdue"]["value_template"]
    ahead = state_payload(finished_at=NOW, last_success_at=NOW + timedelta(days=3 * 365))
    assert render(template, ahead, NOW) == "ON"
    assert render(template, ahead, NOW + timedelta(days=3 * 365)) == "OFF"
    # Two hosts' clocks a few minutes apart are no reason for an alarm.
    skewed = state_payload(finished_at=NOW, last_success_at=NOW + timedelta(minutes=10))
    assert render(template, skewed, NOW) == "OFF"


def test_retained_topics_and_removal(config: Any) -> None:
    owned = job_retained_topics(config, "photos")
    assert owned == {"mqtt_backup/lab/jobs/photos/state", "homeassistant/device/lab_photos/config"}
    removal = removal_messages(owned)
    assert all(m.payload == b"" and m.retain and m.qos == 1 for m in removal)
    assert {m.topic for m in removal} == owned


def test_event_message(config: Any) -> None:
    state = JobState(job_id="photos", name="Photos", status="failed", run_id="r1",
                     finished_at=NOW, error="boom")  # fmt: skip
    message = event_message(Topics(config.mqtt, "lab"), state)
    assert message.topic == "mqtt_backup/lab/jobs/photos/event" and not message.retain
    payload = json.loads(message.payload)
    assert payload["event_type"] == "failed"
    assert (payload["run_id"], payload["finished_at"], payload["error"]) == (
        "r1", "2026-11-29T12:00:00Z", "boom",
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["device", "component"])
def test_entity_ids_come_from_the_job_id_not_its_name(make_config: Any, fmt: str) -> None:
    job = {"name": "Anything at all", "source": "/a", "destination": "nas:a"}
    config = make_config(
        {"instance": "lab-1", "mqtt": {"discovery_format": fmt}, "jobs": {"camera--uploads_": job}}
    )
    found = entities(discovery_messages(config, "camera--uploads_"))
    # Home Assistant slugifies the id it is asked for: runs of - and _ become one _.
    assert found["status"]["object_id"] == "backup_camera_uploads_status"
    assert found["status"]["default_entity_id"] == "sensor.backup_camera_uploads_status"
    assert found["run"]["default_entity_id"] == "button.backup_camera_uploads_run_now"
    assert found["problem"]["default_entity_id"] == "binary_sensor.backup_camera_uploads_problem"
    for key, entity in found.items():
        domain, object_id = entity["default_entity_id"].split(".")
        assert domain == entity["p"] and object_id == entity["object_id"], key
    [service] = entities(instance_discovery_messages(config)).values()
    assert service["default_entity_id"] == "binary_sensor.mqtt_backup_lab_1_service"


def test_every_status_the_state_can_hold_is_an_option(config: Any) -> None:
    found = entities(discovery_messages(config, "photos"))
    assert set(found["status"]["options"]) == set(get_args(Status))
