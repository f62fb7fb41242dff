"""A private mosquitto on a free 127.0.0.1 port, configured for a large installation."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# mosquitto's default max_queued_messages is 1000 (per client, QoS 1/2 beyond those in
# flight): a QoS 1 subscriber to 1,000+ retained states silently receives only part of them.
# The bench broker lifts it, as a large installation must (see README.md).
MAX_QUEUED_MESSAGES = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def settings(self) -> list[str]:
        return [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "user root",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
        ]

    def start(self) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(self.settings()) + "\n", encoding="utf-8")
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self._proc.returncode}; see {self.log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
