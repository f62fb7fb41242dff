"""As a Home Assistant add-on: the broker and its password from the Supervisor's services API.

A small HTTP server on 127.0.0.1 answers like the Supervisor (its answers and status codes
as it gives them); the broker is a real mosquitto that wants the password it hands out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.cli_helpers import cli_argv, cli_env, make_tree, wait_for, write_config
from tests.integration.mqtt_helpers import Collector

pytestmark = pytest.mark.timeout(90)
TOKEN = "supervisor-token-for-this-test"
PASSWORD = "Pa55-from-the-supervisor-do-not-leak"
SERVICE_NOT_ENABLED = (400, {"result": "error", "message": "Service not enabled"})


class FakeSupervisor:
    """``GET /services/mqtt`` as the Supervisor answers it; 403 for any other token."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, Any]] = SERVICE_NOT_ENABLED
        self.requests: list[tuple[str, str | None]] = []
        supervisor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                supervisor.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(403, b"403: Forbidden", "text/plain")
                elif self.path != "/services/mqtt":
                    self._send(404, b'{"result":"error","message":"Service does not exist"}')
                else:
                    status, body = supervisor.answer
                    self._send(status, json.dumps(body).encode())

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-supervisor")
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()


@pytest.fixture
def supervisor() -> Iterator[FakeSupervisor]:
    fake = FakeSupervisor()
    yield fake
    fake.close()


@pytest.fixture
def addon_config(tmp_path: Path, rclone_binary: str) -> Path:
    """A config as an add-on user writes it: jobs, and no mqtt: section at all."""
    make_tree(tmp_path / "src", {"a.txt": b"alpha", "sub/b.txt": b"beta"})
    return write_config(
        tmp_path / "mqtt-backup.yaml",
        {
            "instance": "t",
            # An add-on keeps its state in /data; a test keeps it in its own folder.
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "jobs": {
                "photos": {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}
            },
        },
    )  # fmt: skip


def run_as_addon(
    config: Path, supervisor: FakeSupervisor, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = cli_env() | {"SUPERVISOR_TOKEN": token, "MQTT_BACKUP_SUPERVISOR_URL": supervisor.url}
    return subprocess.run(
        cli_argv(config, *args), capture_output=True, text=True, timeout=60, env=env
    )


def test_the_broker_and_password_from_the_supervisor(
    addon_config: Path, supervisor: FakeSupervisor, broker_factory: Any, tmp_path: Path
) -> None:
    broker = broker_factory(users={"addons": PASSWORD, "reader": "reader-pw"})
    supervisor.answer = (200, {"result": "ok", "data": {
        "host": broker.host, "port": broker.port, "ssl": False, "protocol": "3.1.1",
        "username": "addons", "password": PASSWORD, "addon": "core_mosquitto",
    }})  # fmt: skip
    reader = Collector(broker.host, broker.port, ["#"], username="reader", password="reader-pw")
    try:
        result = run_as_addon(addon_config, supervisor, "--log-level", "DEBUG", "run-job", "photos")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "dst" / "sub" / "b.txt").read_bytes() == b"beta"
        reader.wait_message(
            "mqtt_backup/t/jobs/photos/state", lambda m: m.json()["status"] == "completed"
        )
        reader.wait_message("homeassistant/device/t_photos/config")
    finally:
        reader.close()
    # Retained, so Home Assistant sees it whenever it connects.
    late = Collector(broker.host, broker.port, ["#"], username="reader", password="reader-pw")
    try:
        state = late.wait_message("mqtt_backup/t/jobs/photos/state", lambda m: m.retain)
        assert state.json()["status"] == "completed"
    finally:
        late.close()
    assert supervisor.requests == [("/services/mqtt", f"Bearer {TOKEN}")]
    assert f"MQTT broker from Home Assistant: {broker.host}:{broker.port} as addons" in (
        result.stderr
    )
    assert "u'addons'" in broker.log_text()  # mosquitto's line for the login
    received = [m.payload.decode() for m in (*reader.messages, *late.messages)]
    for text in (result.stdout, result.stderr, broker.log_text(), *received):
        assert PASSWORD not in text


def test_a_host_of_its_own_wins(
    tmp_path: Path, supervisor: FakeSupervisor, mosquitto: Any, rclone_binary: str
) -> None:
    config = write_config(
        tmp_path / "mqtt-backup.yaml",
        {"instance": "t", "state_dir": str(tmp_path / "state"), "rclone": {"binary": rclone_binary},
         "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "base_topic": "own_host"},
         "jobs": {}},
    )  # fmt: skip
    result = run_as_addon(config, supervisor, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert supervisor.requests == []


@pytest.mark.parametrize(
    ("answer", "token", "sentence"),
    [
        (None, "wrong-token",
         "the Home Assistant Supervisor refused to name the MQTT broker (HTTP 403); restart the "
         "add-on, or set mqtt.host"),
        (SERVICE_NOT_ENABLED, TOKEN,
         "Home Assistant has no MQTT broker for add-ons: install and start the Mosquitto broker "
         "add-on, or set mqtt.host to a broker of your own"),
        ((200, {"result": "ok", "data": {}}), TOKEN, "Home Assistant has no MQTT broker"),
    ],
)  # fmt: skip
def test_no_broker_is_one_sentence_and_exit_2(
    addon_config: Path, supervisor: FakeSupervisor, answer: Any, token: str, sentence: str
) -> None:
    if answer is not None:
        supervisor.answer = answer
    result = run_as_addon(addon_config, supervisor, "run-job", "photos", token=token)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"mqtt-backup: {sentence}")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (addon_config.parent / "dst").exists()


def test_no_supervisor_at_that_address(addon_config: Path, supervisor: FakeSupervisor) -> None:
    supervisor.close()
    result = run_as_addon(addon_config, supervisor, "serve")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"mqtt-backup: cannot reach the Home Assistant Supervisor at {supervisor.url} ("
    )


def test_serve_as_an_addon_writes_its_dashboard_and_reloads(
    addon_config: Path, supervisor: FakeSupervisor, broker_factory: Any
) -> None:
    broker = broker_factory(users={"addons": PASSWORD})
    supervisor.answer = (200, {"result": "ok", "data": {
        "host": broker.host, "port": broker.port, "ssl": False,
        "username": "addons", "password": PASSWORD,
    }})  # fmt: skip
    log = addon_config.parent / "serve.log"
    env = cli_env() | {"SUPERVISOR_TOKEN": TOKEN, "MQTT_BACKUP_SUPERVISOR_URL": supervisor.url}
    with log.open("wb") as out:
        process = subprocess.Popen(cli_argv(addon_config, "serve"), stdout=out, stderr=out, env=env)
    try:
        wait_for(lambda: "serving instance t: 1 job(s)" in log.read_text(), what="serve up")
        view = yaml.safe_load((addon_config.parent / "dashboard.yaml").read_text())
        assert view["sections"][1]["cards"][0]["heading"] == "photos"
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in log.read_text(), what="the reload")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    text = log.read_text()
    # The reloaded file is read with the same broker, so nothing waits for a restart.
    assert "takes effect after a restart" not in text
    assert len(supervisor.requests) == 2 and PASSWORD not in text
