"""Pure: the sentence a user reads when the broker cannot be reached, refuses us, or TLS fails.

Python's and paho's own texts ("Connection reset by peer", "Unspecified error") name a
symptom, not the cause. These functions name the cause in the user's terms: which setting
to check, which port or name is wrong. What cannot be known from an exception alone (does
the port speak TLS? plain MQTT?) is passed in by the caller, who may have probed for it.
"""

from __future__ import annotations

import socket
import ssl

# CONNACK refusals that retrying cannot fix (MQTT 5 codes; paho maps 3.1.1 codes 4 and 5 to these).
BAD_CREDENTIALS = 134
NOT_AUTHORIZED = 135
PERMANENT_REFUSALS = frozenset({BAD_CREDENTIALS, NOT_AUTHORIZED})
# OpenSSL's verify codes for a certificate that is valid, but not for the name we connected to.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def endpoint(host: str, port: int) -> str:
    return f"{host}:{port}"


def login_refused(value: int | None, username: str | None) -> str | None:
    """The sentence for a CONNACK refusal that must not be retried, else None."""
    if value not in PERMANENT_REFUSALS:
        return None
    # mosquitto answers a wrong password with "not authorised" (3.1.1 code 5), so with a
    # user name both codes mean the same thing to the user.
    if username:
        who, why = f"user {username!r}", "bad user name or password"
    else:
        who, why = "an anonymous client", "not authorized; set mqtt.username and a password"
    return f"MQTT broker refused the login for {who}: {why}"


def refused(where: str, reason: object) -> str:
    """A CONNACK refusal that may pass (server busy, banned for now, …)."""
    return f"MQTT broker {where} refused the connection: {reason}"


def problem_kind(exc: BaseException) -> str:
    """What makes two failed attempts "the same problem", so it is logged once, not per retry."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"verify:{exc.verify_code}"
    return f"{type(exc).__name__}:{getattr(exc, 'errno', None)}"


def connect_failed(
    exc: BaseException, where: str, host: str, *, tls: bool, plain_mqtt: bool | None = None
) -> str:
    """The sentence for an attempt that failed before the MQTT login (socket or TLS handshake).

    ``plain_mqtt``: whether the port answered a plain MQTT login (the caller's probe), when
    TLS was configured and the handshake broke off; None when unknown.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH:
            return (
                f"MQTT broker {where}: TLS host name mismatch: its certificate is not valid "
                f"for {host!r}; set mqtt.host to a name the certificate lists"
            )
        detail = exc.verify_message or exc.reason or "unknown reason"
        return (
            f"MQTT broker {where}: TLS certificate verify failed ({detail}); "
            "set mqtt.tls.ca_certs to the CA that signed the broker's certificate"
        )
    if isinstance(exc, ssl.CertificateError):  # a name check done outside OpenSSL
        return f"MQTT broker {where}: TLS host name mismatch: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"MQTT broker host {host!r} not found ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"MQTT broker {where} refused the connection: nothing listens on that port "
            "(is the broker running, and is mqtt.port right?)"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"MQTT broker {where} did not answer in time"
    handshake_broke = isinstance(
        exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError
    ) or (isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(exc))
    if tls and handshake_broke:
        if plain_mqtt:
            return (
                f"MQTT broker {where} speaks plain MQTT, not TLS: use its TLS port "
                "(usually 8883) or set mqtt.tls: false"
            )
        return f"MQTT broker {where}: the TLS handshake broke off ({_reason(exc)})"
    if isinstance(exc, ssl.SSLError):
        return f"MQTT broker {where}: TLS failed ({_reason(exc)})"
    return f"cannot reach MQTT broker {where} ({_reason(exc)})"


def closed_before_login(where: str, *, tls: bool, tls_port: bool | None = None) -> str:
    """The broker closed the connection before it answered the login.

    ``tls_port``: whether the port completed a TLS handshake (the caller's probe) when TLS
    was not configured; None when unknown.
    """
    if not tls and tls_port:
        return (
            f"MQTT broker {where} expects TLS, but mqtt.tls is not set: set mqtt.tls "
            "(and mqtt.tls.ca_certs), or use the broker's plain port (usually 1883)"
        )
    return f"MQTT broker {where} closed the connection before answering the login"


def tls_setup_failed(exc: BaseException) -> str:
    """mqtt.tls names files that cannot be read or used (found before any connection)."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"MQTT TLS settings cannot be used: cannot read{name} ({exc.strerror or exc})"
    return f"MQTT TLS settings cannot be used ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
