"""The HTTP endpoint of ``serve``: a small threaded server on a daemon thread.

``/healthz`` — 200 while the scheduler runs and the MQTT broker is connected (or MQTT is
not configured), else 503; both with a JSON body. ``/livez`` — the same without the broker:
for a watchdog that restarts the service, since a restart cannot bring a broker back and
would cancel the running backups. ``/metrics`` — Prometheus, from the live job states.

Each request runs on a thread of its own and only reads: a copy of the executor's states,
the scheduler's and publisher's flags. Nothing a run does waits for a scrape.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from mqtt_backup.config.models import AppConfig, HttpConfig
from mqtt_backup.errors import MqttBackupError
from mqtt_backup.http.health import Health, MqttLink, ServeState, assess
from mqtt_backup.jobs.state import JobState
from mqtt_backup.metrics import JobMetrics, registry
from mqtt_backup.redaction.secrets import Masker, config_secrets

logger = logging.getLogger(__name__)

# A client that connects and sends nothing must not hold its thread for long.
REQUEST_TIMEOUT = 10.0
INDEX = b"mqtt-backup: /healthz /livez /metrics\n"


@dataclass(frozen=True, slots=True)
class ServeView:
    """What the endpoint reads from a running serve; each is asked anew on every request."""

    config: Callable[[], AppConfig]
    states: Callable[[], Mapping[str, JobState]]
    mqtt: Callable[[], MqttLink | None]
    serve: ServeState


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: HttpEndpoint


class _V6Server(_Server):
    address_family = socket.AF_INET6


def bind_reason(exc: OSError) -> str:
    """Why an address could not be bound, in the user's terms."""
    reasons = {
        errno.EADDRINUSE: "the port is already in use (by another serve, or another program)",
        errno.EADDRNOTAVAIL: "this host has no such address",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def _server_class(host: str) -> type[_Server]:
    return _V6Server if ":" in host else _Server


def port_problem(settings: HttpConfig) -> str | None:
    """Why ``serve`` could not listen where ``settings`` say right now, or None."""
    host, port = settings.address
    try:
        with socket.socket(_server_class(host).address_family) as probe:
            # As the server does: a connection of a stopped serve still closing is no obstacle.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return bind_reason(exc)
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return "mqtt-backup"  # not Python's version: nobody needs to know it

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        endpoint = self.server.endpoint
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/healthz", "/livez"):
                health = endpoint.health(with_mqtt=path == "/healthz")
                self._send(health.status_code, "application/json", health.body(), head)
            elif path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encode(endpoint.registry), head)
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", INDEX, head)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n", head)
        except OSError:
            pass  # the client went away mid-answer: nothing to tell anyone
        except Exception:  # one bad request must not end the endpoint's threads
            logger.exception("HTTP %s failed", path)
            self._send(500, "text/plain; charset=utf-8", b"internal error; see the log\n", head)

    def _send(self, code: int, content_type: str, body: bytes, head: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        logger.debug("HTTP %s " + format, self.address_string(), *args)


class HttpEndpoint:
    """serve's HTTP server: ``start()`` binds and serves on a daemon thread, ``stop()`` ends it.

    ``metrics`` is also a sink: add it to the executor, so that a job's last finished run
    is still reported while its next run is going on.
    """

    def __init__(self, settings: HttpConfig, view: ServeView) -> None:
        self.settings = settings
        self._view = view
        self.metrics = JobMetrics(view.config, view.states, self._mqtt_connected)
        self.registry = registry(self.metrics)
        self._masker = Masker(config_secrets(view.config()))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _mqtt_connected(self) -> bool:
        link = self._view.mqtt()
        return link is not None and link.connected

    def health(self, *, with_mqtt: bool = True) -> Health:
        config = self._view.config()
        mqtt = config.mqtt
        health = assess(
            scheduler_running=self._view.serve.scheduler_running,
            stopping=self._view.serve.stopping,
            broker=f"{mqtt.host}:{mqtt.port}" if mqtt is not None else None,
            link=self._view.mqtt(),
            with_mqtt=with_mqtt,
        )
        # A connection problem is the publisher's sentence: masked like every other error.
        return Health(self._masker.mask(health.reason)) if health.reason else health

    def start(self) -> None:
        """Bind and serve; raises MqttBackupError, one sentence, when the address is unusable."""
        if self._server is not None:
            return
        host, port = self.settings.address
        try:
            server = _server_class(host)((host, port), _Handler)
        except OSError as exc:
            raise MqttBackupError(
                f"cannot listen on {self.settings.listen} (http.listen): {bind_reason(exc)}"
            ) from None
        server.endpoint = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="mqtt-backup-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        logger.info("HTTP endpoint on http://%s/ (healthz, livez, metrics)", self.settings.listen)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
