"""A collecting subscriber that waits on a predicate, and per-test topics."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Received:
    """One message, stamped on receipt: ``at`` is time.monotonic(), ``wall`` is time.time()
    (CLOCK_REALTIME, comparable with another process's clock on the same host)."""

    topic: str
    payload: bytes
    retain: bool
    at: float
    wall: float = 0.0

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A subscriber (QoS 1 by default, as Home Assistant for retained state) that keeps every
    message it receives; tests wait on what they expect.

    ``on_message`` is called on paho's thread for each message, before it is kept; with
    ``keep=False`` messages are only counted (a benchmark receiving thousands).
    ``connect_started`` is the time.monotonic() just before connecting.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        qos: int = 1,
        on_message: Callable[[Received], None] | None = None,
        keep: bool = True,
    ) -> None:
        self.messages: list[Received] = []
        self.count = 0
        self._keep = keep
        self._callback = on_message
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if ca_certs is not None:
            self._client.tls_set(ca_certs=ca_certs)
        # paho refuses an empty subscription; a private topic keeps the set non-empty.
        self._topics = topics or [f"collector/{uuid.uuid4().hex}"]
        self._qos = qos
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self.connect_started = time.monotonic()
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("the collector did not get its subscription")

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe([(topic, self._qos) for topic in self._topics])

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        received = Received(
            msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic(), time.time()
        )
        if self._callback is not None:
            self._callback(received)
        with self._cond:
            self.count += 1
            if self._keep:
                self.messages.append(received)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], Any], timeout: float = 5.0) -> Any:
        """The predicate's first truthy answer over the messages so far; fails after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(list(self.messages))
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = [(m.topic, m.payload[:80]) for m in self.messages[-20:]]
                    raise AssertionError(f"timed out; last messages: {topics}")
                self._cond.wait(remaining)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Whether ``predicate()`` (checked after each message) became true within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def wait_message(
        self, topic: str, match: Callable[[Received], bool] = lambda _m: True, timeout: float = 5.0
    ) -> Received:
        return self.wait_for(
            lambda msgs: next((m for m in msgs if m.topic == topic and match(m)), None), timeout
        )

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def retained_snapshot(host: str, port: int, pattern: str, settle: float = 0.3) -> dict[str, bytes]:
    """What a late subscriber gets for ``pattern``: retained topics and their payloads.

    A probe message to a private topic marks the end of the retained messages, so no
    fixed sleep is needed; ``settle`` only bounds the wait for the probe itself.
    """
    probe = f"probe/{uuid.uuid4().hex}"
    collector = Collector(host, port, [pattern, probe])
    try:
        collector.publish(probe, b"x")
        collector.wait_message(probe, timeout=max(settle, 5.0))
        return {m.topic: m.payload for m in collector.messages if m.retain and m.topic != probe}
    finally:
        collector.close()


def unique_base() -> str:
    """A base topic of its own per test, so retained messages never cross tests."""
    return f"test_{uuid.uuid4().hex[:10]}"


def unique_topics() -> dict[str, str]:
    """``base_topic`` and ``discovery_prefix`` of a test's own, for its MQTT settings."""
    base = unique_base()
    return {"base_topic": base, "discovery_prefix": f"{base}_ha"}
