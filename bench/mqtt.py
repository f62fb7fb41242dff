"""A subscriber that timestamps every message it receives (time.time(), CLOCK_REALTIME)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


class Subscriber:
    """Subscribes at QoS 1 (as Home Assistant does for retained state) and keeps every message."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        *,
        on_message: Callable[[Received], None] | None = None,
        keep: bool = True,
    ) -> None:
        self.host, self.port, self.topics = host, port, topics
        self.messages: list[Received] = []
        self.count = 0
        self.cond = threading.Condition()
        self._keep = keep
        self._callback = on_message
        self._subscribed = threading.Event()
        self.connect_started = 0.0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-{uuid.uuid4().hex[:10]}",
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()

    def start(self, wait: bool = True) -> Subscriber:
        self.connect_started = time.time()
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if wait and not self._subscribed.wait(10):
            raise TimeoutError("the bench subscriber did not get its subscription")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time())
        if self._callback is not None:
            self._callback(received)
        with self.cond:
            self.count += 1
            if self._keep:
                self.messages.append(received)
            self.cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True
