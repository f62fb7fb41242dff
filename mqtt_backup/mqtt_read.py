"""MQTT plumbing shared by the publisher: the paho client as this project configures it,
the record of published topics, and a one-shot read of the retained states.

Together with ``publisher.py`` the only code that imports paho: building the client
(protocol, login, TLS, back-off) lives here so that ``Publisher`` and
``read_retained_states`` connect the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from mqtt_backup.config import AppConfig, MqttConfig, TlsConfig
from mqtt_backup.errors import MqttError
from mqtt_backup.state import JobState
from mqtt_backup.topics import Topics

logger = logging.getLogger(__name__)

# CONNACK refusals that retrying cannot fix (MQTT 5 codes; paho maps 3.1.1 codes 4 and 5 to these).
BAD_CREDENTIALS = 134
NOT_AUTHORIZED = 135
RECONNECT_MIN_DELAY = 1
RECONNECT_MAX_DELAY = 60


class KnownTopics(Protocol):
    """Remembers, across restarts, which retained topics were published for which job."""

    def published_topics(self) -> dict[str, set[str]]: ...
    def record_published(self, job_id: str, topics: set[str]) -> None: ...
    def forget_published(self, job_id: str) -> None: ...


class MemoryKnownTopics:
    """The fallback store: removed-job cleanup within one process lifetime only."""

    def __init__(self) -> None:
        self._topics: dict[str, set[str]] = {}

    def published_topics(self) -> dict[str, set[str]]:
        return {job: set(topics) for job, topics in self._topics.items()}

    def record_published(self, job_id: str, topics: set[str]) -> None:
        # Adds, like the SQLite history does; forget_published() is the way to drop topics.
        self._topics.setdefault(job_id, set()).update(topics)

    def forget_published(self, job_id: str) -> None:
        self._topics.pop(job_id, None)


def build_client(mqtt_config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho client with protocol, login and TLS set, not yet connected."""
    protocol = mqtt.MQTTv5 if mqtt_config.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
    )
    password = mqtt_config.resolved_password()
    if mqtt_config.username is not None or password is not None:
        client.username_pw_set(mqtt_config.username, password)
    tls = mqtt_config.tls
    if tls is True:
        client.tls_set()  # the system's CA bundle
    elif isinstance(tls, TlsConfig):
        client.tls_set(
            ca_certs=str(tls.ca_certs) if tls.ca_certs else None,
            certfile=str(tls.certfile) if tls.certfile else None,
            keyfile=str(tls.keyfile) if tls.keyfile else None,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
    client.on_socket_open = _no_delay
    return client


def _no_delay(_client: mqtt.Client, _userdata: object, sock: socket.socket) -> None:
    # A state is one small packet: Nagle would hold it back until the previous one is
    # acknowledged, and a delayed ACK makes that up to 40 ms.
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def refusal_error(mqtt_config: MqttConfig, reason: object) -> MqttError | None:
    """The error for a CONNACK refusal that must not be retried, else None."""
    value = getattr(reason, "value", None)
    if value not in (BAD_CREDENTIALS, NOT_AUTHORIZED):
        return None
    # mosquitto answers a wrong password with "not authorised" (3.1.1 code 5), so with a
    # user name both codes mean the same thing to the user.
    if mqtt_config.username:
        who, why = f"user {mqtt_config.username!r}", "bad user name or password"
    else:
        who, why = "an anonymous client", "not authorized; set mqtt.username and a password"
    return MqttError(f"MQTT broker refused the login for {who}: {why}")


def unique_client_id(instance: str, role: str) -> str:
    """A client id that cannot collide with (and so disconnect) the daemon's own."""
    return f"mqtt-backup-{instance}-{role}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def read_retained_states(config: AppConfig, timeout: float = 3.0) -> dict[str, JobState] | None:
    """Every job's retained state as a late subscriber sees it; None when no broker answers.

    Raises MqttError when the broker refuses the login. After subscribing, a message to a
    private probe topic marks the end of the retained messages (the broker sends them in
    order), so a fast broker is not waited on for the whole timeout.
    """
    if config.mqtt is None:
        return None
    mqtt_config = config.mqtt
    topics = Topics(mqtt_config, config.instance)
    client_id = unique_client_id(config.instance, "status")
    probe = topics.probe(client_id)
    client = build_client(mqtt_config, client_id)
    states: dict[str, JobState] = {}
    done = threading.Event()
    refused: list[MqttError] = []

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            error = refusal_error(mqtt_config, reason)
            if error is not None:
                refused.append(error)
            done.set()
            return
        c.subscribe([(topics.state_wildcard, 1), (probe, 1)])
        c.publish(probe, b"", qos=1, retain=False)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == probe:
            done.set()
            return
        if not message.payload:
            return  # a cleared topic
        try:
            state = JobState.from_json(message.payload)
        except (ValidationError, ValueError):
            logger.warning("ignoring an unreadable state on %s", message.topic)
            return
        states[state.job_id] = state

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive)
    except (OSError, ValueError) as exc:
        logger.info("no MQTT broker at %s:%s (%s)", mqtt_config.host, mqtt_config.port, exc)
        return None
    client.loop_start()
    try:
        answered = done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise refused[0]
    if not answered:
        return None
    return dict(sorted(states.items()))
