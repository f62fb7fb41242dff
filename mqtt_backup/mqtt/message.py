"""The one value that crosses into MQTT: built by discovery and state code, sent by publisher."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True

    @classmethod
    def text(cls, topic: str, payload: str, *, qos: int = 1, retain: bool = True) -> Message:
        return cls(topic, payload.encode("utf-8"), qos, retain)

    @classmethod
    def clear(cls, topic: str) -> Message:
        """An empty retained message: the broker forgets the topic, Home Assistant the entity."""
        return cls(topic, b"", 1, True)
