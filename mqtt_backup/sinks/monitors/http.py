"""The only module of the monitors that speaks HTTP: send one request, say how it went.

The standard library's client: proxies from the environment (``https_proxy``, ``no_proxy``)
are honoured, certificates are checked against the system's CAs, and every request has a
timeout. Errors become a short sentence that never holds the URL.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from mqtt_backup import __version__
from mqtt_backup.sinks.monitors.report import USER_AGENT, Request, split_credentials

# Read at most this much of an answer: receivers say "OK", and nothing of it is used.
_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True, slots=True)
class Sent:
    """How one attempt went: delivered, or why not and whether to try again."""

    delivered: bool
    problem: str | None = None
    retry: bool = False


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener()


_OPENER = _opener()


def send(request: Request, timeout: float) -> Sent:
    """Send ``request``; never raises for what the network or the receiver does."""
    url, auth = split_credentials(request.url)
    headers = {"User-Agent": f"{USER_AGENT}/{__version__}", **dict(auth), **dict(request.headers)}
    outgoing = urllib.request.Request(  # noqa: S310 - config/monitors.py allows http(s) only
        url, data=request.body, headers=headers, method=request.method
    )
    try:
        with _OPENER.open(outgoing, timeout=timeout) as answer:
            answer.read(_MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        return answered(exc.code)
    except urllib.error.URLError as exc:
        return Sent(False, reason(exc.reason, timeout), retry=True)
    except (OSError, http.client.HTTPException) as exc:
        return Sent(False, reason(exc, timeout), retry=True)
    except ValueError as exc:  # a URL urllib cannot use: trying again changes nothing
        return Sent(False, f"the URL cannot be used ({type(exc).__name__})")
    return Sent(True)


def answered(code: int) -> Sent:
    """A receiver's HTTP status: 2xx delivered; 5xx, 408 and 429 may pass; others will not."""
    if 200 <= code < 300:
        return Sent(True)
    retry = code >= 500 or code in (408, 425, 429)
    return Sent(False, f"the receiver answered HTTP {code}", retry=retry)


def reason(error: object, timeout: float) -> str:
    """A network error in a few words."""
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "host not found"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, ConnectionError | http.client.HTTPException):
        return f"the connection broke ({type(error).__name__})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
