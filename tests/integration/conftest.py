"""Real mosquitto brokers for the integration tests: shared, private, and TLS with a password."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


class Broker:
    """One mosquitto on 127.0.0.1; stop() and start() keep the port, so clients can come back."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: Tls | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.tls = tls
        self.users = users or {}
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
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
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if self._process is not None:
            return
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                self._process = None
                pytest.fail(f"mosquitto exited at start:\n{err}\n{log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.02)
        pytest.fail("mosquitto did not accept connections within 10 s")

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
        # The port must be free again before a restart; mosquitto sets SO_REUSEADDR.

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One anonymous broker for the whole session; tests keep apart by their own base_topic."""
    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Broker]]:
    """Private brokers, for tests that stop, restart or lock down their broker."""
    brokers: list[Broker] = []

    def make(*, tls: Tls | None = None, users: dict[str, str] | None = None) -> Broker:
        broker = Broker(tmp_path_factory.mktemp("broker"), tls=tls, users=users)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("ca")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "2", "-subj", "/CN=mqtt-backup test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "san.ext")  # fmt: skip
    return Tls(ca=d / "ca.crt", cert=d / "server.crt", key=d / "server.key")


@pytest.fixture
def tls_broker_factory(
    broker_factory: Callable[..., Broker], test_ca: Tls
) -> Callable[[dict[str, str]], Broker]:
    """A broker that wants TLS (signed by ``test_ca``) and a user name and password."""

    def make(users: dict[str, str]) -> Broker:
        return broker_factory(tls=test_ca, users=users)

    return make
