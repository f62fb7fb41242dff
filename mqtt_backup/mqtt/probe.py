"""Two quick questions to a broker port whose connection broke off: TLS or plain MQTT?

A TLS client on a plain port sees "connection reset", a plain client on a TLS port sees
the connection closed before any answer: both look like a broken network. One extra
connection tells them apart, so the error can name the setting to change. Called once per
outage, never per retry.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from mqtt_backup.config.models import MqttConfig
from mqtt_backup.mqtt import errors as mqtt_errors

TIMEOUT = 2.0
# MQTT 3.1.1 CONNECT: clean session, keep-alive 60 s, empty client id (the broker makes one).
_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_CONNACK = 0x20


def answers_plain_mqtt(host: str, port: int, timeout: float = TIMEOUT) -> bool:
    """Whether the port answers a plain MQTT login with a CONNACK (whatever its verdict)."""
    try:
        with socket.create_connection((host, port), timeout) as sock:
            sock.sendall(_CONNECT)
            first = sock.recv(1)
    except OSError:
        return False
    return first[:1] == bytes([_CONNACK])


def answers_tls(host: str, port: int, timeout: float = TIMEOUT) -> bool:
    """Whether the port completes a TLS handshake (the certificate is not checked here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only "does it speak TLS?"; nothing is sent
    try:
        with socket.create_connection((host, port), timeout) as raw:
            tls = context.wrap_socket(raw, server_hostname=host)
            with contextlib.suppress(OSError):
                tls.close()
    except (OSError, ValueError):
        return False
    return True


def explain_failure(mqtt_config: MqttConfig, exc: BaseException) -> str:
    """The sentence for a connect attempt that failed before the login, probing if needed."""
    tls = mqtt_config.tls is not None
    plain = None
    if tls and isinstance(exc, ssl.SSLError | ConnectionResetError):
        plain = answers_plain_mqtt(mqtt_config.host, mqtt_config.port)
    where = mqtt_errors.endpoint(mqtt_config.host, mqtt_config.port)
    return mqtt_errors.connect_failed(exc, where, mqtt_config.host, tls=tls, plain_mqtt=plain)


def explain_early_close(mqtt_config: MqttConfig) -> str:
    """The sentence for a broker that closed the connection before it answered the login."""
    tls = mqtt_config.tls is not None
    where = mqtt_errors.endpoint(mqtt_config.host, mqtt_config.port)
    tls_port = None if tls else answers_tls(mqtt_config.host, mqtt_config.port)
    return mqtt_errors.closed_before_login(where, tls=tls, tls_port=tls_port)
