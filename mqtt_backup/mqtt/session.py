"""One paho client through all its connects: every failure named once, then a short look-around.

After each connect the session reads, before anything is published, what the broker
retains for the instance (availability and owner record; a private probe topic's echo
marks the end of them) and hands that to the publisher, which decides whether to publish.
Failures are named in the user's terms (see ``mqtt/errors.py``) and logged once per problem,
not once per retry; a refused login ends the retries, like Home Assistant's own client.

Runs on paho's network thread: the callbacks record, decide and return; nothing here waits
for the broker except the one-off probe that names a broken-off connection.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt

from mqtt_backup.config.models import MqttConfig
from mqtt_backup.errors import MqttError
from mqtt_backup.mqtt import errors as mqtt_errors
from mqtt_backup.mqtt import probe as mqtt_probe
from mqtt_backup.mqtt.client import build_client
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.topics import Topics

logger = logging.getLogger(__name__)


class SessionHandler(Protocol):
    def session_ready(self, availability: bytes | None, owner: bytes | None) -> None: ...
    def session_lost(self) -> None: ...
    def session_message(self, message: mqtt.MQTTMessage) -> None: ...
    def session_failed(self, error: MqttError) -> None: ...
    def session_attempt_failed(self) -> None: ...


class Session:
    """Connects in the background and keeps reconnecting with back-off (1 s to 60 s)."""

    def __init__(
        self,
        mqtt_config: MqttConfig,
        topics: Topics,
        client_id: str,
        handler: SessionHandler,
        *,
        will: Message | None = None,
        subscriptions: list[tuple[str, int]] | None = None,
        quiet: bool = False,
    ) -> None:
        """``subscriptions``: topics wanted from the first moment (before the look-around);
        ``quiet``: log problems at DEBUG only, for a caller that reports them itself."""
        self._mqtt = mqtt_config
        self._topics = topics
        self._client_id = client_id
        self._handler = handler
        self._will = will
        self._subscriptions = list(subscriptions or [])
        self._level = logging.DEBUG if quiet else logging.WARNING
        self._where = mqtt_errors.endpoint(mqtt_config.host, mqtt_config.port)
        self._probe = topics.probe(client_id)
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._answered = False  # the broker answered this connection's login (CONNACK)
        self._looking = False  # between CONNACK and the probe's echo
        self._retained: dict[str, bytes] = {}
        self._problem_kind: str | None = None
        self._problem: str | None = None
        self._failed = False
        self._closing = False

    @property
    def problem(self) -> str | None:
        """The last connection problem, named; None since the last successful connect."""
        return self._problem

    def start(self) -> None:
        """Start connecting. Raises MqttError when the settings cannot be used (TLS files)."""
        client = build_client(self._mqtt, self._client_id)
        if self._will is not None:
            # The broker publishes this for us when the connection dies without a goodbye.
            w = self._will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        client.connect_async(self._mqtt.host, self._mqtt.port, keepalive=self._mqtt.keepalive)
        client.loop_start()
        logger.info("connecting to MQTT broker %s", self._where)

    def publish(self, message: Message) -> mqtt.MQTTMessageInfo | None:
        client = self._client
        if client is None:
            return None
        return client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain
        )

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        if self._client is not None and topics:
            self._client.subscribe(topics)

    def give_up(self) -> None:
        """Leave cleanly (the broker drops the last will) and stop reconnecting."""
        self._closing = True
        if self._client is not None:
            self._client.disconnect()

    def close(self) -> None:
        self._closing = True
        client = self._client
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # -- paho callbacks --------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        self._answered = True
        if getattr(reason, "is_failure", False):
            value = getattr(reason, "value", None)
            refusal = mqtt_errors.login_refused(value, self._mqtt.username)
            if refusal is None:
                self._report(f"connack:{value}", lambda: mqtt_errors.refused(self._where, reason))
                return  # paho retries with back-off
            self._problem = refusal
            self._failed = True
            client.disconnect()  # ends paho's reconnect loop
            self._handler.session_failed(MqttError(refusal))
            return
        logger.info("connected to MQTT broker %s", self._where)
        self._problem = self._problem_kind = None
        with self._lock:
            self._looking = True
            self._retained = {}
        look = [(self._topics.availability, 1), (self._topics.owner, 1), (self._probe, 1)]
        client.subscribe(self._subscriptions + look)
        # The broker sends retained messages before any later packet: the echo ends them.
        client.publish(self._probe, b"", qos=1, retain=False)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        topic = message.topic
        with self._lock:
            looking = self._looking
            if looking and topic in (self._topics.availability, self._topics.owner):
                if message.payload:
                    self._retained[topic] = bytes(message.payload)
                return
            if topic == self._probe:
                if not looking:
                    return
                self._looking = False
                retained = dict(self._retained)
            else:
                retained = None
        if retained is None:
            self._handler.session_message(message)
            return
        self._handler.session_ready(
            retained.get(self._topics.availability), retained.get(self._topics.owner)
        )

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _p: object
    ) -> None:
        answered, self._answered = self._answered, False
        with self._lock:
            self._looking = False
        self._handler.session_lost()
        if self._closing or self._failed:
            return
        if not answered:
            self._report("closed-before-login", lambda: mqtt_probe.explain_early_close(self._mqtt))
        elif self._problem is None:
            logger.log(
                self._level, "lost the MQTT broker %s (%s); reconnecting", self._where, reason
            )

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # paho calls this from its ``except OSError`` block, so the attempt's error is at hand.
        exc = sys.exc_info()[1]
        if exc is None:
            self._report("unknown", lambda: f"cannot reach MQTT broker {self._where}")
            return
        self._report(
            mqtt_errors.problem_kind(exc), lambda: mqtt_probe.explain_failure(self._mqtt, exc)
        )

    def _report(self, kind: str, describe: Callable[[], str]) -> None:
        """Name a failed attempt; logged when it differs from the last one, not on every retry."""
        if kind == self._problem_kind:
            return
        self._problem_kind = kind
        self._problem = describe()
        logger.log(self._level, "%s; retrying", self._problem)
        self._handler.session_attempt_failed()
