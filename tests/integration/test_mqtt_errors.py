"""Every way the broker connection fails is named for what it is, once, and never stops a backup."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.models import AppConfig
from mqtt_backup.jobs.history import History
from mqtt_backup.mqtt.client import read_retained_states
from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
from tests.integration.cli_helpers import make_tree, run_cli, tree, wait_for, write_config
from tests.integration.conftest import Broker, Tls, free_port
from tests.integration.mqtt_helpers import unique_topics
from tests.integration.serve_helpers import Daemon
from tests.integration.serve_helpers import make_config as serve_config

pytestmark = pytest.mark.timeout(90)
JOBS = {"photos": {"source": "/a", "destination": "nas:a", "schedule": "every 1h"}}
PASSWORD = "right-password"


@pytest.fixture(scope="session")
def misnamed_cert(test_ca: Tls, tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A server certificate from the test CA, but for another name than 127.0.0.1."""
    d = tmp_path_factory.mktemp("misnamed")
    ca_dir = test_ca.ca.parent

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=broker.invalid")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:broker.invalid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_dir / "ca.crt"),
            "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-out", "server.crt",
            "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return Tls(ca=test_ca.ca, cert=d / "server.crt", key=d / "server.key")


@pytest.fixture(scope="session")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the brokers use."""
    d = tmp_path_factory.mktemp("stranger")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "2", "-subj", "/CN=stranger CA"],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip
    return d / "ca.crt"


Case = Callable[..., tuple[Broker, dict[str, Any]]]


@pytest.fixture
def cases(broker_factory, test_ca: Tls, misnamed_cert: Tls, stranger_ca: Path) -> Case:  # type: ignore[no-untyped-def]
    """A broker and the client's MQTT settings for each named problem."""

    def make(name: str) -> tuple[Broker, dict[str, Any]]:
        login = {"username": "backup", "password": PASSWORD}
        if name == "verify":
            broker = broker_factory(tls=test_ca, users={"backup": PASSWORD})
            return broker, login | {"tls": {"ca_certs": str(stranger_ca)}}
        if name == "mismatch":
            broker = broker_factory(tls=misnamed_cert, users={"backup": PASSWORD})
            return broker, login | {"tls": {"ca_certs": str(test_ca.ca)}}
        if name == "login":
            broker = broker_factory(users={"backup": PASSWORD})
            return broker, login | {"password": "wrong"}
        if name == "tls-to-plain":
            broker = broker_factory(users={"backup": PASSWORD})
            return broker, login | {"tls": {"ca_certs": str(test_ca.ca)}}
        if name == "plain-to-tls":
            return broker_factory(tls=test_ca, users={"backup": PASSWORD}), login
        if name == "refused":
            broker = broker_factory()
            broker.stop()
            return broker, {}
        raise AssertionError(name)

    return make


EXPECTED = {
    "verify": "TLS certificate verify failed (",
    "mismatch": "TLS host name mismatch: its certificate is not valid for '127.0.0.1'",
    "login": "MQTT broker refused the login for user 'backup': bad user name or password",
    "tls-to-plain": "speaks plain MQTT, not TLS: use its TLS port (usually 8883) "
    "or set mqtt.tls: false",
    "plain-to-tls": "expects TLS, but mqtt.tls is not set",
    "refused": "refused the connection: nothing listens on that port",
}


def mqtt_config(make_config: Any, broker: Broker, settings: dict[str, Any]) -> AppConfig:
    mqtt = {"host": broker.host, "port": broker.port, **unique_topics(), **settings}
    return make_config({"mqtt": mqtt, "jobs": JOBS})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_connection_problem_is_named_once_while_retrying(
    name: str, cases: Case, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker, settings = cases(name)
    config = mqtt_config(make_config, broker, settings)
    publisher = DaemonPublisher(config)
    publisher.start()
    try:
        assert not publisher.wait_connected(3.5)  # long enough for the retries at 1 s and 2 s
        assert publisher.problem is not None and EXPECTED[name] in publisher.problem
        named = [r for r in caplog.records if EXPECTED[name] in r.getMessage()]
        assert len(named) == 1, [r.getMessage() for r in caplog.records]
        assert named[0].levelno >= logging.WARNING
        for record in caplog.records:
            message = record.getMessage()
            assert "Traceback" not in message and "Unspecified error" not in message
            assert PASSWORD not in message
    finally:
        publisher.stop(timeout=1)
    if name == "login":
        assert "not retrying" in caplog.text
    else:  # a problem that may pass is retried: the broker saw more than one attempt
        assert "; retrying" in named[0].getMessage()


@pytest.mark.parametrize("name", ["verify", "plain-to-tls", "login"])
def test_status_names_the_problem_and_shows_the_local_history(
    name: str, cases: Case, tmp_path: Path, rclone_binary: str
) -> None:
    broker, settings = cases(name)
    config = write_config(
        tmp_path / "c.yaml",
        {
            "instance": "lab",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "mqtt": {"host": broker.host, "port": broker.port, **settings},
            "jobs": JOBS,
        },
    )
    result = run_cli(config, "status")
    assert result.returncode == 0, result.stderr
    assert "from local history" in result.stdout
    assert result.stderr.count(EXPECTED[name]) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_read_retained_states_names_a_plain_client_on_a_tls_port(
    cases: Case, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broker, settings = cases("plain-to-tls")
    started = time.monotonic()
    assert read_retained_states(mqtt_config(make_config, broker, settings), timeout=5) is None
    assert time.monotonic() - started < 4  # the closed connection answers; no waiting it out
    assert EXPECTED["plain-to-tls"] in caplog.text


@pytest.mark.parametrize("name", ["verify", "login", "refused"])
def test_run_job_backs_up_and_says_once_why_its_state_was_not_published(
    name: str, cases: Case, tmp_path: Path, rclone_binary: str
) -> None:
    broker, settings = cases(name)
    make_tree(tmp_path / "src", {"a.txt": b"1", "b/c.txt": b"22"})
    config = write_config(
        tmp_path / "c.yaml",
        {
            "instance": "lab",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "mqtt": {"host": broker.host, "port": broker.port, **unique_topics(), **settings},
            "jobs": {"photos": {"source": str(tmp_path / "src"),
                                "destination": str(tmp_path / "dst")}},
        },
    )  # fmt: skip
    result = run_cli(config, "run-job", "photos")
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "dst") == {"a.txt": b"1", "b/c.txt": b"22"}
    with History(tmp_path / "state") as history:
        assert [r.status for r in history.runs("photos")] == ["completed"]
    assert result.stderr.count(EXPECTED[name]) == 1, result.stderr
    assert "the state of photos was not published (" in result.stderr
    assert "was not reachable" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tls_file_that_broke_after_the_config_was_read_is_named_and_nothing_raises(
    tmp_path: Path, test_ca: Tls, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(test_ca.ca.read_bytes())
    config = make_config(
        {"mqtt": {"port": free_port(), "tls": {"ca_certs": str(ca)}, **unique_topics()},
         "jobs": JOBS}
    )  # fmt: skip
    ca.write_text("renewed by hand, half-written\n")  # the config check passed before this
    publisher = DaemonPublisher(config)
    publisher.start()  # does not raise: publishing never stops the service
    try:
        assert not publisher.wait_connected(1)
        assert publisher.error is not None
        assert str(publisher.error).startswith("MQTT TLS settings cannot be used (")
        assert caplog.text.count("MQTT TLS settings cannot be used") == 1
    finally:
        publisher.stop(timeout=1)


@pytest.mark.parametrize("name", ["login", "verify"])
def test_serve_keeps_running_its_jobs_and_logs_the_problem_once(
    name: str, cases: Case, tmp_path: Path, rclone_binary: str
) -> None:
    broker, settings = cases(name)
    src = tmp_path / "src"
    make_tree(src, {"a.txt": b"1"})
    jobs = {"p": {"source": str(src), "destination": str(tmp_path / "dst"), "schedule": "every 1s"}}
    config = serve_config(tmp_path, rclone_binary, jobs, broker)
    config["mqtt"].update(settings)
    d = Daemon(tmp_path, config).start()
    try:
        deadline = time.monotonic() + 30
        while len(d.finished("p")) < 3:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.2)
        assert d.healthcheck() == 0

        def attempts() -> int:
            text = broker.log_text()
            return text.count("Client connection from 127.0.0.1 failed") + text.count(
                "not authorised"
            )

        if name == "login":
            assert attempts() == 1  # the runs took over 2 s: a retry after 1 s would show
        else:  # a problem that may pass is retried, and still logged only once
            wait_for(lambda: attempts() >= 2, 15, "a second attempt")
        log = d.log()
        assert log.count(EXPECTED[name]) == 1, log
        assert d.stop() == 0
    finally:
        d.close()
