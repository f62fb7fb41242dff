"""Pure: Home Assistant MQTT discovery messages for every job and for the instance itself.

One HA device per job, linked with ``via_device`` to one device for the instance. Every
entity reads the job's single retained state topic through a ``value_template``, so a
job costs one retained state topic plus one (device format) discovery topic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mqtt_backup import __version__
from mqtt_backup.config.models import AppConfig, MqttConfig
from mqtt_backup.jobs.state import PHASES, PROBLEMS, STATUSES, TERMINAL, JobState
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.topics import Component, Topics

SUPPORT_URL = "https://github.com/mqtt-backup/mqtt-backup"
# From the state model, so a status or phase added there is announced too: Home Assistant
# ignores an enum sensor's value that is not among its options and keeps showing the previous
# one. Every run that ends sends an event named for its ending.
STATUS_OPTIONS = list(STATUSES)
PHASE_OPTIONS = list(PHASES)
EVENT_TYPES = [status for status in STATUSES if status in TERMINAL]
# HA rejects a state longer than 255 characters; the error sentence is cut short of it.
MAX_STATE_LENGTH = 250
# Seconds a last success may lie ahead of Home Assistant's clock before it counts as overdue.
FUTURE_SUCCESS_SLACK = 3600


@dataclass(frozen=True)
class Entity:
    key: str
    component: Component
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    # The end of the entity id, when it is not the key (unique ids keep the key).
    id_suffix: str | None = None


def slug(text: str) -> str:
    """``text`` as Home Assistant writes it into an entity id (ids here are ``[a-z0-9_-]``).

    Home Assistant slugifies the requested id: runs of ``-`` and ``_`` become one ``_`` and
    none is left at either end. Doing the same here tells the dashboard the real id.
    """
    return re.sub(r"[-_]+", "_", text).strip("_")


def job_object_prefix(job_id: str) -> str:
    """Every entity id of a job starts with this: ``sensor.backup_<job id>_status``."""
    return slug(f"backup_{job_id}")


def instance_object_prefix(instance: str) -> str:
    return slug(f"mqtt_backup_{instance}")


def entity_id(entity: Entity, object_prefix: str) -> str:
    """The entity id discovery asks for: from the job id and the key, never from ``name``."""
    return f"{entity.component}.{slug(f'{object_prefix}_{entity.id_suffix or entity.key}')}"


def _value(path: str) -> str:
    """A template that renders ``None`` (HA: unknown) instead of failing on a null or missing field.

    ``default({})`` keeps ``deletion.x`` safe when ``deletion`` itself is missing; HA turns
    the rendered text ``None`` into the unknown state for sensors and binary sensors.
    """
    parts = path.split(".")
    expression = "value_json"
    for part in parts[:-1]:
        expression = f"({expression}.{part} | default({{}}))"
    return f"{{{{ {expression}.{parts[-1]} | default(None) }}}}"


def _overdue_template(stale_seconds: float | None) -> str:
    if stale_seconds is None:
        # A manual-only job has no schedule to fall behind.
        return "OFF"
    return (
        "{% set s = value_json.last_success_at | default(None) %}"
        "{% if s %}{% set age = (now() - as_datetime(s)).total_seconds() %}"
        # A last success ahead of Home Assistant's clock by more than two hosts' clocks differ
        # was recorded under a wrong clock: it proves nothing, and would otherwise look fresh
        # until that date.
        f"{{{{ 'ON' if age > {int(stale_seconds)} or age < -{FUTURE_SUCCESS_SLACK} else 'OFF' }}}}"
        # Never succeeded: overdue once a run has ended without success; a job that has not
        # run yet is not overdue (it may simply not have reached its first scheduled time).
        "{% elif value_json.finished_at | default(None) %}ON{% else %}OFF{% endif %}"
    )


def job_entities(mqtt: MqttConfig, topics: Topics, config: AppConfig, job_id: str) -> list[Entity]:
    """The entities of one job, in display order."""
    state = topics.state(job_id)
    stale = config.jobs[job_id].effective_stale_after()
    diagnostic = {"entity_category": "diagnostic"}

    def sensor(key: str, name: str, path: str, **extra: Any) -> Entity:
        return Entity(
            key, "sensor", name, {"state_topic": state, "value_template": _value(path)} | extra
        )

    entities = [
        sensor(
            "status",
            "Status",
            "status",
            device_class="enum",
            options=STATUS_OPTIONS,
            icon="mdi:backup-restore",
        ),
        sensor(
            "phase",
            "Phase",
            "phase",
            device_class="enum",
            options=PHASE_OPTIONS,
            icon="mdi:list-status",
            **diagnostic,
        ),
        sensor(
            "progress",
            "Progress",
            "percent",
            unit_of_measurement="%",
            suggested_display_precision=0,
            icon="mdi:progress-upload",
        ),
        sensor(
            "transferred",
            "Transferred",
            "bytes_transferred",
            device_class="data_size",
            unit_of_measurement="B",
        ),
        sensor(
            "speed",
            "Speed",
            "speed_bytes",
            device_class="data_rate",
            unit_of_measurement="B/s",
            state_class="measurement",
            **diagnostic,
        ),
        sensor(
            "eta",
            "ETA",
            "eta_seconds",
            device_class="duration",
            unit_of_measurement="s",
            **diagnostic,
        ),
        sensor("last_run", "Last run", "finished_at", device_class="timestamp"),
        sensor("last_success", "Last success", "last_success_at", device_class="timestamp"),
        sensor("next_run", "Next run", "next_run_at", device_class="timestamp"),
        sensor(
            "duration",
            "Duration",
            "duration_seconds",
            device_class="duration",
            unit_of_measurement="s",
            **diagnostic,
        ),
        sensor("files_deleted", "Files deleted", "deletion.files_deleted", icon="mdi:file-remove"),
        sensor(
            "space_freed",
            "Space freed",
            "deletion.bytes_deleted",
            device_class="data_size",
            unit_of_measurement="B",
        ),
        Entity(
            "error",
            "sensor",
            "Error",
            {
                "state_topic": state,
                "value_template": "{{ (value_json.error | default(None))"
                f"[:{MAX_STATE_LENGTH}] if value_json.error | default(None) else None }}}}",
                "icon": "mdi:alert-circle-outline",
            }
            | diagnostic,
        ),
        Entity(
            "problem",
            "binary_sensor",
            "Problem",
            {
                "state_topic": state,
                "device_class": "problem",
                # On after a failure, and after a completed run with a warning in ``error``: it
                # kept files it could not prove at the destination, or an after hook failed.
                # Never after a skipped run: Overdue is what watches a job that keeps skipping.
                "value_template": "{% set r = value_json.last_result | default(None) %}"
                f"{{{{ 'ON' if r in {list(PROBLEMS)} or (r == 'completed' and "
                "value_json.status == 'completed' and value_json.error | default(None)) "
                "else 'OFF' }}",
            },
        ),
        Entity(
            "overdue",
            "binary_sensor",
            "Overdue",
            {
                "state_topic": state,
                "device_class": "problem",
                "value_template": _overdue_template(stale.total_seconds() if stale else None),
                "icon": "mdi:calendar-alert",
            },
        ),
        Entity(
            "run_finished",
            "event",
            "Run finished",
            {
                "state_topic": topics.event(job_id),
                "event_types": EVENT_TYPES,
            },
        ),
    ]
    if mqtt.allow_commands:
        entities += [
            Entity(
                "run",
                "button",
                "Run now",
                {
                    "command_topic": topics.command(job_id, "run"),
                    "payload_press": "PRESS",
                    "icon": "mdi:play",
                },
                id_suffix="run_now",
            ),
            Entity(
                "cancel",
                "button",
                "Cancel",
                {
                    "command_topic": topics.command(job_id, "cancel"),
                    "payload_press": "PRESS",
                    "icon": "mdi:stop",
                },
            ),
            Entity(
                "schedule_enabled",
                "switch",
                "Schedule enabled",
                {
                    "state_topic": state,
                    "command_topic": topics.command(job_id, "enabled/set"),
                    "value_template": "{{ 'ON' if value_json.enabled | default(true) else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:calendar-clock",
                },
            ),
        ]
    return entities


def _origin() -> dict[str, str]:
    return {"name": "mqtt-backup", "sw_version": __version__, "support_url": SUPPORT_URL}


def instance_identifier(instance: str) -> str:
    return f"mqtt_backup_{instance}"


def _instance_device(instance: str) -> dict[str, Any]:
    return {
        "identifiers": [instance_identifier(instance)],
        "name": f"mqtt-backup {instance}",
        "manufacturer": "mqtt-backup",
        "model": "Backup service",
        "sw_version": __version__,
    }


def _job_device(config: AppConfig, job_id: str) -> dict[str, Any]:
    return {
        "identifiers": [f"{instance_identifier(config.instance)}_{job_id}"],
        # The device name prefixes every entity's friendly name ("Backup Photos Status"); the
        # entity ids are pinned from the job id, so renaming a job changes no id.
        "name": f"Backup {config.display_name(job_id)}",
        "manufacturer": "mqtt-backup",
        "model": "rclone backup job",
        "sw_version": __version__,
        "via_device": instance_identifier(config.instance),
    }


def _availability(topics: Topics) -> list[dict[str, str]]:
    return [
        {
            "topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def _messages(
    mqtt: MqttConfig,
    topics: Topics,
    device: dict[str, Any],
    entities: list[Entity],
    uid_prefix: str,
    object_prefix: str,
    device_topic: str,
    component_topic: Any,
    availability: bool,
) -> list[Message]:
    shared: dict[str, Any] = {"device": device, "origin": _origin()}
    if availability:
        shared["availability"] = _availability(topics)
    configs = {
        e.key: {
            "name": e.name,
            "unique_id": f"{uid_prefix}_{e.key}",
            **_pinned_id(entity_id(e, object_prefix)),
            "qos": 1,
        }
        | e.options
        for e in entities
    }
    if mqtt.discovery_format == "device":
        payload = shared | {"cmps": {e.key: {"p": e.component} | configs[e.key] for e in entities}}
        return [_json(device_topic, payload)]
    return [_json(component_topic(e.component, e.key), shared | configs[e.key]) for e in entities]


def _pinned_id(entity_id: str) -> dict[str, str]:
    """Both spellings: ``object_id`` up to Home Assistant 2025.9, ``default_entity_id`` after.

    Home Assistant uses either only when it first registers an entity; it keeps an id it
    has already given out. From 2025.10 ``default_entity_id`` wins and ``object_id`` no
    longer draws a deprecation warning when it is there too; older versions drop the key
    they do not know.
    """
    return {"object_id": entity_id.split(".", 1)[1], "default_entity_id": entity_id}


def job_entity_ids(config: AppConfig, job_id: str) -> dict[str, str]:
    """Key → entity id of every entity discovery announces for the job (none without it)."""
    mqtt = config.mqtt
    if mqtt is None or not mqtt.discovery:
        return {}
    topics = Topics(mqtt, config.instance)
    prefix = job_object_prefix(job_id)
    return {e.key: entity_id(e, prefix) for e in job_entities(mqtt, topics, config, job_id)}


def discovery_messages(config: AppConfig, job_id: str) -> list[Message]:
    """Retained discovery for one job; empty when MQTT or discovery is off."""
    mqtt = config.mqtt
    if mqtt is None or not mqtt.discovery:
        return []
    topics = Topics(mqtt, config.instance)
    return _messages(
        mqtt,
        topics,
        _job_device(config, job_id),
        job_entities(mqtt, topics, config, job_id),
        f"{config.instance}_{job_id}",
        job_object_prefix(job_id),
        topics.device_discovery(job_id),
        lambda component, key: topics.component_discovery(component, job_id, key),
        availability=True,
    )


def instance_discovery_messages(config: AppConfig) -> list[Message]:
    """The instance device (the ``via_device`` of every job) with one connectivity entity.

    The entity reads the availability topic itself and carries no availability, so it
    shows "disconnected" rather than "unavailable" while the service is down.
    """
    mqtt = config.mqtt
    if mqtt is None or not mqtt.discovery:
        return []
    topics = Topics(mqtt, config.instance)
    service = Entity(
        "service",
        "binary_sensor",
        "Service",
        {
            "state_topic": topics.availability,
            "device_class": "connectivity",
            "payload_on": "online",
            "payload_off": "offline",
            "entity_category": "diagnostic",
        },
    )
    return _messages(
        mqtt,
        topics,
        _instance_device(config.instance),
        [service],
        config.instance,
        instance_object_prefix(config.instance),
        topics.instance_device_discovery(),
        topics.instance_component_discovery,
        availability=False,
    )


def job_retained_topics(config: AppConfig, job_id: str) -> set[str]:
    """Every retained topic this job owns: its state and its discovery topics."""
    assert config.mqtt is not None  # noqa: S101 - callers only ask with MQTT configured
    topics = Topics(config.mqtt, config.instance)
    return {topics.state(job_id)} | {m.topic for m in discovery_messages(config, job_id)}


def removal_messages(topics: set[str] | list[str]) -> list[Message]:
    """Empty retained payloads: the broker forgets each topic, Home Assistant the entities."""
    return [Message.clear(topic) for topic in sorted(topics)]


def event_message(topics: Topics, state: JobState) -> Message:
    """The non-retained ``event`` message of a finished run (HA event entity: ``event_type``)."""
    payload = json.dumps(
        {
            "event_type": state.status,
            "job_id": state.job_id,
            "name": state.name,
            "run_id": state.run_id,
            "trigger": state.trigger,
            "finished_at": state.model_dump(mode="json")["finished_at"],
            "duration_seconds": state.duration_seconds,
            "bytes_transferred": state.bytes_transferred,
            "files_transferred": state.files_transferred,
            "files_deleted": state.deletion.files_deleted,
            "error": state.error,
        }
    )
    return Message.text(topics.event(state.job_id), payload, qos=1, retain=False)


def _json(topic: str, payload: dict[str, Any]) -> Message:
    return Message.text(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
