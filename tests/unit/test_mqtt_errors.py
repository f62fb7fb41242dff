"""The sentences for MQTT connection problems: each names the cause and the setting to change."""

from __future__ import annotations

import socket
import ssl

import pytest

from mqtt_backup.mqtt.errors import (
    closed_before_login,
    connect_failed,
    login_refused,
    problem_kind,
    tls_setup_failed,
)

WHERE = "broker.lan:8883"


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def test_an_untrusted_certificate_is_a_verify_failure_naming_the_ca_setting() -> None:
    text = connect_failed(
        verify_error(19, "self-signed certificate in certificate chain"), WHERE, "broker.lan",
        tls=True,
    )  # fmt: skip
    assert text == (
        "MQTT broker broker.lan:8883: TLS certificate verify failed (self-signed certificate "
        "in certificate chain); set mqtt.tls.ca_certs to the CA that signed the broker's "
        "certificate"
    )


@pytest.mark.parametrize("code", [62, 64])
def test_a_certificate_for_another_name_is_a_host_name_mismatch(code: int) -> None:
    text = connect_failed(verify_error(code, "mismatch"), WHERE, "broker.lan", tls=True)
    assert text.startswith("MQTT broker broker.lan:8883: TLS host name mismatch")
    assert "'broker.lan'" in text and "certificate verify failed" not in text


def test_host_not_found() -> None:
    exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    text = connect_failed(exc, WHERE, "broker.lan", tls=False)
    assert text == "MQTT broker host 'broker.lan' not found (Name or service not known)"


def test_connection_refused_says_nothing_listens() -> None:
    text = connect_failed(ConnectionRefusedError(111, "Connection refused"), WHERE, "b", tls=False)
    assert "refused the connection: nothing listens on that port" in text


def test_a_reset_tls_handshake_on_a_plain_mqtt_port_names_the_port() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    text = connect_failed(reset, WHERE, "broker.lan", tls=True, plain_mqtt=True)
    assert text.startswith("MQTT broker broker.lan:8883 speaks plain MQTT, not TLS")
    unknown = connect_failed(reset, WHERE, "broker.lan", tls=True, plain_mqtt=False)
    assert unknown == (
        "MQTT broker broker.lan:8883: the TLS handshake broke off (Connection reset by peer)"
    )


def test_a_connection_closed_before_the_login_on_a_tls_port() -> None:
    assert closed_before_login(WHERE, tls=False, tls_port=True).startswith(
        "MQTT broker broker.lan:8883 expects TLS, but mqtt.tls is not set"
    )
    assert closed_before_login(WHERE, tls=False, tls_port=False) == (
        "MQTT broker broker.lan:8883 closed the connection before answering the login"
    )


def test_only_bad_credentials_and_not_authorised_are_final() -> None:
    assert login_refused(134, "backup") == (
        "MQTT broker refused the login for user 'backup': bad user name or password"
    )
    assert login_refused(135, "backup") == login_refused(134, "backup")
    assert login_refused(135, None) == (
        "MQTT broker refused the login for an anonymous client: not authorized; "
        "set mqtt.username and a password"
    )
    assert login_refused(136, "backup") is None  # server unavailable: may pass


def test_retries_of_one_problem_are_one_kind_and_another_problem_is_another() -> None:
    first = problem_kind(ConnectionRefusedError(111, "Connection refused"))
    assert first == problem_kind(ConnectionRefusedError(111, "Connection refused"))
    assert first != problem_kind(verify_error(19, "x"))
    assert problem_kind(verify_error(19, "x")) != problem_kind(verify_error(62, "x"))


def test_an_unreadable_tls_file_is_named() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "/etc/mqtt/ca.crt")
    assert tls_setup_failed(exc) == (
        "MQTT TLS settings cannot be used: cannot read /etc/mqtt/ca.crt "
        "(No such file or directory)"
    )
