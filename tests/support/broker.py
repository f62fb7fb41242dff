"""One real mosquitto on a free 127.0.0.1 port: anonymous, or with TLS and a password file."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """mosquitto did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


class Broker:
    """One mosquitto on 127.0.0.1; stop() and start() keep the port, so clients can come back.

    ``settings`` are extra lines for mosquitto.conf (the benchmarks raise the queue limits).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tls: Tls | None = None,
        users: dict[str, str] | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.tls = tls
        self.users = users or {}
        self.settings = list(settings)
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            # persistence off: a restarted broker has lost every retained message.
            "persistence false",
            # As root, mosquitto drops privileges before reading password_file.
            "user root",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.users:
            passwords = self.workdir / "passwd"
            for number, (user, password) in enumerate(self.users.items()):
                flag = ["-c"] if number == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", *flag, "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        self.conf.write_text("\n".join([*lines, *self.settings]) + "\n")

    def start(self) -> Broker:
        """Start mosquitto and wait until it accepts connections; raises BrokerError."""
        if self._process is not None:
            return self
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                self._process = None
                raise BrokerError(f"mosquitto exited at start:\n{err}\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return self
            time.sleep(0.02)
        raise BrokerError("mosquitto did not accept connections within 10 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        # The port must be free again before a restart; mosquitto sets SO_REUSEADDR.

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
