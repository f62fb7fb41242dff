"""Running as an add-on: what the Supervisor's answers mean, and how they merge into the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_backup.config.loader import parse_config
from mqtt_backup.config.models import TlsConfig
from mqtt_backup.config.supervisor import (
    STARTER,
    BrokerService,
    SupervisorError,
    addon_config,
    addon_log_level,
    needs_broker,
    parse_service,
    with_broker,
    write_dashboard,
    write_starter_config,
)
from mqtt_backup.redaction.secrets import config_secrets

PASSWORD = "Supervisor-made-pa55word"
SERVICE = BrokerService("core-mosquitto", 1883, ssl=False, username="addons", password=PASSWORD)
ADDON = {"SUPERVISOR_TOKEN": "t0ken"}


def ok(data: dict[str, Any]) -> bytes:
    return json.dumps({"result": "ok", "data": data}).encode()


def test_parse_a_broker() -> None:
    body = ok({"host": "core-mosquitto", "port": 1883, "ssl": False, "protocol": "3.1.1",
               "username": "addons", "password": PASSWORD, "addon": "core_mosquitto"})  # fmt: skip
    assert parse_service(200, body) == SERVICE
    assert PASSWORD not in repr(parse_service(200, body))
    assert parse_service(200, ok({"host": "h", "port": 8883, "ssl": True})) == BrokerService(
        "h", 8883, ssl=True
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b"401: Unauthorized", "refused to name the MQTT broker (HTTP 401); restart"),
        (403, b"403: Forbidden", "refused to name the MQTT broker (HTTP 403); restart"),
        (403, b'{"result":"error","message":"No access to mqtt service!"}',
         "(HTTP 403: No access to mqtt service!)"),
        (400, b'{"result":"error","message":"Service not enabled"}',
         "Home Assistant has no MQTT broker for add-ons: install and start the Mosquitto"),
        (404, b'{"result":"error","message":"Service does not exist"}', "no MQTT broker"),
        (200, b'{"result":"ok","data":{}}', "no MQTT broker"),
        (200, b"not json", "no MQTT broker"),
        (200, ok({"host": "", "port": 1883}), "no usable MQTT host and port"),
        (200, ok({"host": "h", "port": "1883"}), "no usable MQTT host and port"),
        (502, b"Bad Gateway", "answered HTTP 502 when asked"),
    ],
)  # fmt: skip
def test_every_other_answer_is_one_sentence(status: int, body: bytes, expected: str) -> None:
    with pytest.raises(SupervisorError) as caught:
        parse_service(status, body)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def config_of(text: str) -> Any:
    return parse_config(text)


def test_which_configs_take_the_broker_from_the_supervisor() -> None:
    assert needs_broker(config_of("jobs: {}"))
    assert needs_broker(config_of("mqtt: {base_topic: x}"))
    assert needs_broker(config_of("mqtt: {port: 1883}"))
    assert not needs_broker(config_of("mqtt: {host: 127.0.0.1}"))


def test_the_supervisor_fills_what_the_config_leaves_open() -> None:
    config = with_broker(config_of("mqtt: {base_topic: backups, discovery_prefix: ha}"), SERVICE)
    assert config.mqtt is not None
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username) == (
        "core-mosquitto", 1883, "addons",
    )  # fmt: skip
    assert config.mqtt.resolved_password() == PASSWORD
    assert (config.mqtt.base_topic, config.mqtt.discovery_prefix) == ("backups", "ha")
    assert config.mqtt.tls is None
    # The Supervisor's password is a secret like any other: masked wherever text leaves.
    assert PASSWORD in config_secrets(config, environ={}).values
    assert PASSWORD not in repr(config)


def test_keys_written_under_mqtt_win(monkeypatch: pytest.MonkeyPatch) -> None:
    tls = BrokerService("core-mosquitto", 8883, ssl=True, username="addons", password=PASSWORD)
    config = with_broker(config_of("mqtt: {port: 1884, username: me}"), tls)
    assert config.mqtt is not None
    assert (config.mqtt.host, config.mqtt.port) == ("core-mosquitto", 1884)
    assert config.mqtt.tls == TlsConfig()  # the system's CAs
    # Credentials come as a pair: "me" keeps the password of the environment.
    monkeypatch.setenv("MQTT_BACKUP_MQTT_PASSWORD", "from-env")
    assert (config.mqtt.username, config.mqtt.resolved_password()) == ("me", "from-env")
    assert with_broker(config_of("mqtt: {tls: false}"), tls).mqtt.tls is None  # type: ignore[union-attr]
    no_mqtt = with_broker(config_of("jobs: {}"), SERVICE)
    assert no_mqtt.mqtt is not None and no_mqtt.mqtt.username == "addons"


def test_outside_the_supervisor_nothing_changes() -> None:
    def never(_url: str, _token: str) -> BrokerService:
        raise AssertionError("the Supervisor was asked")

    config = config_of("jobs: {}")
    assert addon_config(config, broker=True, environ={}, fetch=never) is config


def test_as_an_addon() -> None:
    asked: list[tuple[str, str]] = []

    def fetch(url: str, token: str) -> BrokerService:
        asked.append((url, token))
        return SERVICE

    config = addon_config(config_of("jobs: {}"), broker=True, environ=ADDON, fetch=fetch)
    assert asked == [("http://supervisor", "t0ken")]
    assert config.mqtt is not None and config.mqtt.host == "core-mosquitto"
    environ = ADDON | {"MQTT_BACKUP_SUPERVISOR_URL": "http://127.0.0.1:9"}
    own = config_of("mqtt: {host: broker.lan}")
    config = addon_config(own, broker=True, environ=environ, fetch=fetch)
    assert len(asked) == 1 and config.mqtt.host == "broker.lan"  # type: ignore[union-attr]
    # healthcheck and history do not ask.
    config = addon_config(config_of("jobs: {}"), broker=False, environ=environ, fetch=fetch)
    assert len(asked) == 1 and config.mqtt is None


def test_the_starter_config_on_first_start(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-backup.yaml"
    assert not write_starter_config(path, environ={})
    assert write_starter_config(path, environ=ADDON)
    assert path.read_text() == STARTER and (tmp_path / "rclone").is_dir()
    assert parse_config(STARTER).jobs == {}
    # The example in its comments is a valid job once uncommented.
    example = "\n".join(line[2:] for line in STARTER.splitlines() if line.startswith("# "))
    jobs = yaml.safe_load(example[example.index("jobs:") :])
    assert parse_config(yaml.safe_dump(jobs)).jobs["ha-backups"].source == "/backup"
    path.write_text("jobs: {}\n")
    assert not write_starter_config(path, environ=ADDON)
    assert path.read_text() == "jobs: {}\n"


def test_the_dashboard_file(tmp_path: Path) -> None:
    config = with_broker(
        config_of("jobs: {photos: {source: /a, destination: 'nas:a', schedule: every 1h}}"),
        SERVICE,
    )
    write_dashboard(tmp_path / "dashboard.yaml", config)
    view = yaml.safe_load((tmp_path / "dashboard.yaml").read_text())
    assert view["sections"][1]["cards"][0]["heading"] == "photos"
    assert PASSWORD not in (tmp_path / "dashboard.yaml").read_text()


def test_the_log_level_option(tmp_path: Path) -> None:
    options = tmp_path / "options.json"
    assert addon_log_level(ADDON, options) is None  # no file yet
    options.write_text('{"log_level": "debug"}')
    assert addon_log_level(ADDON, options) == "DEBUG"
    assert addon_log_level({}, options) is None
    options.write_text('{"log_level": "loud"}')
    assert addon_log_level(ADDON, options) is None


def test_the_addon_serves_http_for_its_watchdog(caplog: pytest.LogCaptureFixture) -> None:
    def fetch(_url: str, _token: str) -> BrokerService:
        return SERVICE

    config = addon_config(config_of("jobs: {}"), broker=True, environ=ADDON, fetch=fetch)
    assert config.http is not None and config.http.address == ("0.0.0.0", 8099)  # noqa: S104
    assert addon_config(config_of("jobs: {}"), broker=True, environ={}).http is None
    # The file's own http: wins, and a listen the watchdog cannot reach is said at start.
    own = config_of("http: {listen: '127.0.0.1:8099'}")
    assert addon_config(own, broker=False, environ=ADDON).http == own.http
    assert "does not answer the add-on's watchdog" in caplog.text
    caplog.clear()
    exposed = config_of("http: {listen: '0.0.0.0:8099', allow_remote: true}")
    assert addon_config(exposed, broker=False, environ=ADDON).http == exposed.http
    assert caplog.text == ""
