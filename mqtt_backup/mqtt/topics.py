"""Pure topic names: one place that knows how every MQTT topic of an instance is spelled."""

from __future__ import annotations

from typing import Literal

from mqtt_backup.config.models import MqttConfig

Command = Literal["run", "cancel", "enabled/set"]
COMMANDS: tuple[Command, ...] = ("run", "cancel", "enabled/set")
MAX_COMMAND_BYTES = 1024
Component = Literal["sensor", "binary_sensor", "button", "switch", "event"]


class Topics:
    """Topic names of one instance; job ids and the instance are ``[a-z0-9_-]`` (config checks)."""

    def __init__(self, mqtt: MqttConfig, instance: str) -> None:
        self.instance = instance
        self.base = f"{mqtt.base_topic.strip('/')}/{instance}"
        self.prefix = mqtt.discovery_prefix.strip("/")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def owner(self) -> str:
        """Who serves the instance (retained JSON: host, pid, started_at, token)."""
        return f"{self.base}/owner"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth/last-will topic (not retained; sent on every HA connect)."""
        return f"{self.prefix}/status"

    def job(self, job_id: str) -> str:
        return f"{self.base}/jobs/{job_id}"

    def state(self, job_id: str) -> str:
        return f"{self.job(job_id)}/state"

    def event(self, job_id: str) -> str:
        return f"{self.job(job_id)}/event"

    def command(self, job_id: str, command: Command) -> str:
        return f"{self.job(job_id)}/{command}"

    def probe(self, client_id: str) -> str:
        """A private topic whose echo marks the end of the retained messages after a subscribe."""
        return f"{self.base}/probe/{client_id}"

    @property
    def state_wildcard(self) -> str:
        return f"{self.base}/jobs/+/state"

    def command_subscriptions(self) -> list[str]:
        """One wildcard per command, so a new job needs no new subscription."""
        return [f"{self.base}/jobs/+/{command}" for command in COMMANDS]

    def device_discovery(self, job_id: str) -> str:
        """Device-based discovery (HA >= 2024.12): one message per job."""
        return f"{self.prefix}/device/{self.instance}_{job_id}/config"

    def component_discovery(self, component: Component, job_id: str, key: str) -> str:
        """Classic per-entity discovery for older Home Assistant."""
        return f"{self.prefix}/{component}/{self.instance}_{job_id}/{key}/config"

    def instance_device_discovery(self) -> str:
        return f"{self.prefix}/device/{self.instance}/config"

    def instance_component_discovery(self, component: Component, key: str) -> str:
        return f"{self.prefix}/{component}/{self.instance}/{key}/config"

    def parse_command(self, topic: str) -> tuple[str, Command] | None:
        """``(job_id, command)`` for a command topic of this instance, else None."""
        head = f"{self.base}/jobs/"
        if not topic.startswith(head):
            return None
        job_id, _, command = topic[len(head) :].partition("/")
        if not job_id or command not in COMMANDS:
            return None
        if not all(c.isascii() and (c.isalnum() or c in "_-") for c in job_id):
            return None
        if job_id != job_id.lower():
            return None
        return job_id, command


def command_rejection(
    command: str, payload: bytes, *, known_job: bool, retained: bool
) -> str | None:
    """Why a command message must be ignored (a sentence for the log), or None to accept it."""
    if retained:
        return "it is retained (a stale command would run again on every reconnect)"
    if not known_job:
        return "there is no such job"
    if len(payload) > MAX_COMMAND_BYTES:
        return f"its payload is {len(payload)} bytes (at most {MAX_COMMAND_BYTES})"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return "its payload is not UTF-8 text"
    if command == "enabled/set" and text.strip() not in ("ON", "OFF"):
        return "its payload is neither ON nor OFF"
    return None
