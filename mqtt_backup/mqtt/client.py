"""MQTT plumbing shared by the publisher: the paho client as this project configures it,
and a one-shot read of what the broker retains.

With ``session.py`` and the publishers the only code that imports paho: building the
client (protocol, login, TLS, back-off) lives here so that the publisher's session and
``read_retained`` connect the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from mqtt_backup.config.models import AppConfig, MqttConfig, TlsConfig
from mqtt_backup.errors import MqttError
from mqtt_backup.jobs.state import JobState
from mqtt_backup.mqtt.errors import endpoint, login_refused, tls_setup_failed
from mqtt_backup.mqtt.errors import refused as refused_text
from mqtt_backup.mqtt.probe import explain_early_close, explain_failure
from mqtt_backup.mqtt.topics import Topics

if TYPE_CHECKING:
    # paho defines the protocol of the sockets it hands to callbacks for type checkers only.
    from paho.mqtt.client import SocketLike

logger = logging.getLogger(__name__)

RECONNECT_MIN_DELAY = 1
RECONNECT_MAX_DELAY = 60


def build_client(mqtt_config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho client with protocol, login and TLS set, not yet connected.

    Raises MqttError when a TLS file or the password file cannot be read or used.
    """
    protocol = mqtt.MQTTv5 if mqtt_config.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
    )
    try:
        password = mqtt_config.resolved_password()
    except OSError as exc:
        raise MqttError(
            f"cannot read mqtt.password_file {mqtt_config.password_file} ({exc.strerror or exc})"
        ) from None
    if mqtt_config.username is not None or password is not None:
        client.username_pw_set(mqtt_config.username, password)
    tls = mqtt_config.tls
    try:
        if tls is not None:
            _set_tls(client, tls)
    except (OSError, ValueError) as exc:
        raise MqttError(tls_setup_failed(exc)) from None
    client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
    client.on_socket_open = _no_delay
    return client


def _set_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    files = [tls.ca_certs, tls.certfile, tls.keyfile]
    for path in files:
        if path is not None:
            # Read first: OpenSSL's own error for a missing file does not name the file.
            with open(path, "rb"):
                pass
    client.tls_set(  # without ca_certs: the system's CA bundle
        ca_certs=str(tls.ca_certs) if tls.ca_certs else None,
        certfile=str(tls.certfile) if tls.certfile else None,
        keyfile=str(tls.keyfile) if tls.keyfile else None,
    )
    if tls.insecure:
        client.tls_insecure_set(True)


def _no_delay(_client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
    # A state is one small packet: Nagle would hold it back until the previous one is
    # acknowledged, and a delayed ACK makes that up to 40 ms. (A TLS socket is a socket too.)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def unique_client_id(instance: str, role: str) -> str:
    """A client id that cannot collide with (and so disconnect) the daemon's own."""
    return f"mqtt-backup-{instance}-{role}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def read_retained_states(config: AppConfig, timeout: float = 3.0) -> dict[str, JobState] | None:
    """Every job's retained state as a late subscriber sees it; None when no broker answers.

    Raises MqttError when the broker refuses the login or the MQTT settings cannot be used.
    """
    if config.mqtt is None:
        return None
    topics = Topics(config.mqtt, config.instance)
    retained = read_retained(config, [topics.state_wildcard], timeout)
    if retained is None:
        return None
    states: dict[str, JobState] = {}
    for topic, payload in retained.items():
        try:
            state = JobState.from_json(payload)
        except (ValidationError, ValueError):
            logger.warning("ignoring an unreadable state on %s", topic)
            continue
        states[state.job_id] = state
    return dict(sorted(states.items()))


def read_retained(
    config: AppConfig, patterns: list[str], timeout: float = 3.0, *, quiet: bool = False
) -> dict[str, bytes] | None:
    """What a late subscriber to ``patterns`` gets (topic → payload, cleared topics left out).

    None when no broker answers in time; why is logged as a warning (at DEBUG when
    ``quiet``, for a caller that connects again and reports it then). Raises MqttError when
    the broker refuses the login or the settings cannot be used. After subscribing, a message
    to a private probe topic marks the end of the retained messages (the broker sends them in
    order), so a fast broker is not waited on for the whole timeout.
    """
    if config.mqtt is None:
        return None
    mqtt_config = config.mqtt
    topics = Topics(mqtt_config, config.instance)
    client_id = unique_client_id(config.instance, "status")
    probe = topics.probe(client_id)
    client = build_client(mqtt_config, client_id)
    retained: dict[str, bytes] = {}
    done = threading.Event()
    answered = threading.Event()  # the broker answered the login
    complete = threading.Event()  # the probe came back: every retained message is in
    refused: list[MqttError] = []
    level = logging.DEBUG if quiet else logging.WARNING

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        answered.set()
        if getattr(reason, "is_failure", False):
            value = getattr(reason, "value", None)
            message = login_refused(value, mqtt_config.username)
            if message is not None:
                refused.append(MqttError(message))
            else:
                logger.log(
                    level, "%s", refused_text(endpoint(mqtt_config.host, mqtt_config.port), reason)
                )
            done.set()
            return
        c.subscribe([(pattern, 1) for pattern in patterns] + [(probe, 1)])
        c.publish(probe, b"", qos=1, retain=False)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == probe:
            complete.set()
            done.set()
        elif message.payload:
            retained[message.topic] = bytes(message.payload)

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
        if not answered.is_set() and not done.is_set():
            logger.log(level, "%s", explain_early_close(mqtt_config))
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    try:
        client.connect(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive)
    except (OSError, ValueError) as exc:
        logger.log(level, "%s", explain_failure(mqtt_config, exc))
        return None
    client.loop_start()
    try:
        finished = done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise refused[0]
    if not finished:
        logger.log(
            level,
            "MQTT broker %s did not answer in %.0f s",
            endpoint(mqtt_config.host, mqtt_config.port),
            timeout,
        )
        return None
    return retained if complete.is_set() else None
