"""Real mosquitto brokers for the integration tests: shared, private, and TLS with a password.

The broker itself is tests/support/broker.py, shared with the benchmarks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.support.broker import Broker, BrokerError, Tls, free_port

__all__ = ["Broker", "Tls", "free_port"]


def _started(broker: Broker) -> Broker:
    try:
        return broker.start()
    except BrokerError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One anonymous broker for the whole session; tests keep apart by their own base_topic."""
    broker = _started(Broker(tmp_path_factory.mktemp("mosquitto")))
    yield broker
    broker.stop()


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Broker]]:
    """Private brokers, for tests that stop, restart or lock down their broker."""
    brokers: list[Broker] = []

    def make(*, tls: Tls | None = None, users: dict[str, str] | None = None) -> Broker:
        broker = _started(Broker(tmp_path_factory.mktemp("broker"), tls=tls, users=users))
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
