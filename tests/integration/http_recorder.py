"""A real HTTP server on 127.0.0.1 that records every request, for the monitor tests.

``stop()`` closes the port (connections are refused, as when a receiver is down) and
``start()`` opens the same port again.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.integration.conftest import free_port


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class Recorder:
    """Answers ``status`` (200 by default) to everything, after ``delay`` seconds."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.requests: list[Recorded] = []
        self.status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with recorder._lock:
                    recorder.requests.append(
                        Recorded(
                            self.command,
                            parts.path,
                            parse_qs(parts.query, keep_blank_values=True),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                        )
                    )
                if recorder.delay:
                    time.sleep(recorder.delay)
                self.send_response(recorder.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *_args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up waiting: what a slow receiver is for

        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = Server((self.host, self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def is_down(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), 0.2):
                return False
        except OSError:
            return True

    def seen(self, predicate: Callable[[Recorded], bool] = lambda _r: True) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def wait(
        self, predicate: Callable[[list[Recorded]], Any], timeout: float = 20, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.seen())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or 'requests'}; got "
            + ", ".join(f"{r.method} {r.path}" for r in self.seen())
        )
