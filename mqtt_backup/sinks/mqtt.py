"""The MQTT publisher as a sink: every state retained, and one event per finished run."""

from __future__ import annotations

from typing import Protocol

from mqtt_backup.jobs.state import JobState
from mqtt_backup.sinks import Sink


class StatePublisher(Protocol):
    def publish_state(self, state: JobState) -> None: ...

    def publish_event(self, state: JobState) -> None: ...


class MqttSink(Sink):
    """Hands states to the publisher, which coalesces them per job and sends on its thread."""

    name = "mqtt"

    def __init__(self, publisher: StatePublisher) -> None:
        self._publisher = publisher

    def state_changed(self, state: JobState) -> None:
        self._publisher.publish_state(state)

    def run_finished(self, state: JobState) -> None:
        self._publisher.publish_event(state)
