"""Pure: whether a running serve is healthy, and the JSON that says why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol


class MqttLink(Protocol):
    """What health needs of the MQTT publisher."""

    @property
    def connected(self) -> bool: ...

    @property
    def problem(self) -> str | None: ...


class ServeState(Protocol):
    """What health needs of the running serve."""

    @property
    def scheduler_running(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Health:
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503

    def body(self) -> bytes:
        payload = {"status": "ok"} if self.ok else {"status": "unhealthy", "reason": self.reason}
        return json.dumps(payload).encode() + b"\n"


def assess(
    *,
    scheduler_running: bool,
    stopping: bool,
    broker: str | None,
    link: MqttLink | None,
    with_mqtt: bool = True,
) -> Health:
    """Healthy while the scheduler runs and, with ``with_mqtt``, the broker is connected.

    ``broker`` is the configured ``host:port``, None when MQTT is not configured (then it
    is not asked); ``link`` is the publisher, None before it exists.
    """
    if stopping:
        return Health("mqtt-backup serve is shutting down")
    if not scheduler_running:
        return Health("the scheduler is not running")
    if not with_mqtt or broker is None:
        return Health()
    if link is not None and link.connected:
        return Health()
    problem = link.problem if link is not None else None
    return Health(f"MQTT broker {broker} not connected" + (f": {problem}" if problem else ""))
