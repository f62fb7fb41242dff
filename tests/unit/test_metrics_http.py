"""The ``http:`` settings and the health rules of the endpoint (pure: no socket here)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from mqtt_backup.config.loader import parse_config
from mqtt_backup.http.health import assess
from tests.unit.test_config_rules import errors_of


def test_http_is_off_unless_asked_for_and_loopback_by_default() -> None:
    assert parse_config("jobs: {}").http is None
    assert parse_config("http: false").http is None
    for text in ("http: true", "http: {}"):
        http = parse_config(text).http
        assert http is not None and http.address == ("127.0.0.1", 8099)
    assert parse_config("http: {listen: '[::1]:9100'}").http.address == ("::1", 9100)  # type: ignore[union-attr]
    assert parse_config("http: {listen: 'localhost:9100'}").http.address == ("127.0.0.1", 9100)  # type: ignore[union-attr]
    assert parse_config("http: {listen: 9100}").http.listen == "127.0.0.1:9100"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:8099", "0.0.0.0:8099 can be reached from other hosts and the endpoint has no "
                         "authentication; set http.allow_remote: true to accept that"),
        ("'[::]:8099'", "[::]:8099 can be reached from other hosts"),
        ("192.168.1.5:8099", "192.168.1.5:8099 can be reached from other hosts"),
        ("nas", "'nas' is not address:port; write for example 127.0.0.1:8099"),
        ("nas.lan:8099", "'nas.lan' is not an IP address; write one such as 127.0.0.1"),
        ("'::1:8099'", "write an IPv6 address in brackets: [::1]:8099"),
        ("127.0.0.1:99999", "the port '99999' is not a number from 1 to 65535"),
        ("127.0.0.1:http", "the port 'http' is not a number from 1 to 65535"),
    ],
)  # fmt: skip
def test_a_listen_address_that_cannot_be_used_names_its_line(listen: str, expected: str) -> None:
    [error] = errors_of(f"jobs: {{}}\nhttp:\n  listen: {listen}\n")
    assert error.startswith(f"http.listen: {expected}")
    assert error.endswith("(line 3)")


def test_an_address_other_hosts_reach_needs_allow_remote() -> None:
    http = parse_config("http: {listen: '0.0.0.0:8099', allow_remote: true}").http
    assert http is not None and http.address == ("0.0.0.0", 8099)  # noqa: S104
    assert errors_of("http: {listen: '127.0.0.1:8099', allow_rmote: true}") == [
        "http.allow_rmote: unknown key (check its spelling) (line 1)"
    ]


@dataclass
class Link:
    connected: bool
    problem: str | None = None


BROKER = "127.0.0.1:1883"


def test_healthy_while_the_scheduler_runs_and_the_broker_is_connected() -> None:
    health = assess(scheduler_running=True, stopping=False, broker=BROKER, link=Link(True))
    assert health.ok and health.status_code == 200
    assert json.loads(health.body()) == {"status": "ok"}
    # Without MQTT configured, the broker is not asked.
    assert assess(scheduler_running=True, stopping=False, broker=None, link=None).ok


@pytest.mark.parametrize(
    ("running", "stopping", "link", "reason"),
    [
        (True, False, Link(False, "refused the connection: nothing listens on that port"),
         "MQTT broker 127.0.0.1:1883 not connected: refused the connection: nothing listens "
         "on that port"),
        (True, False, Link(False), "MQTT broker 127.0.0.1:1883 not connected"),
        (True, False, None, "MQTT broker 127.0.0.1:1883 not connected"),
        (False, False, Link(True), "the scheduler is not running"),
        (False, True, Link(True), "mqtt-backup serve is shutting down"),
    ],
)  # fmt: skip
def test_unhealthy_says_why(running: bool, stopping: bool, link: Link | None, reason: str) -> None:
    health = assess(scheduler_running=running, stopping=stopping, broker=BROKER, link=link)
    assert health.status_code == 503
    assert json.loads(health.body()) == {"status": "unhealthy", "reason": reason}


def test_liveness_ignores_the_broker() -> None:
    away = Link(False, "host 'nas' not found")
    live = assess(scheduler_running=True, stopping=False, broker=BROKER, link=away, with_mqtt=False)
    assert live.ok
    stopped = assess(
        scheduler_running=False, stopping=False, broker=BROKER, link=away, with_mqtt=False
    )
    assert stopped.reason == "the scheduler is not running"
