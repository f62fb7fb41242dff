"""Adapters that let the executor's state changes reach the publisher."""

from __future__ import annotations

from typing import Protocol

from mqtt_backup.state import JobState


class StatePublisher(Protocol):
    def publish_state(self, state: JobState) -> None: ...

    def publish_event(self, state: JobState) -> None: ...


class PublishingListener:
    """Publishes every state change, and one event per finished run."""

    def __init__(self, publisher: StatePublisher) -> None:
        self._publisher = publisher

    def state_changed(self, state: JobState) -> None:
        self._publisher.publish_state(state)

    def run_finished(self, state: JobState) -> None:
        self._publisher.publish_event(state)
