"""TLS with a test CA, password logins, and the password never showing up anywhere."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from mqtt_backup.errors import MqttError
from mqtt_backup.jobs.state import initial
from mqtt_backup.mqtt.client import read_retained_states
from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher
from mqtt_backup.mqtt.topics import Topics
from tests.integration.mqtt_helpers import Collector, unique_topics

pytestmark = pytest.mark.timeout(60)
PASSWORD = "s3cret-Pa55word-do-not-leak"
JOBS = {"photos": {"source": "/a", "destination": "nas:a", "schedule": "every 1h"}}


def tls_config(make_config: Any, broker: Any, password: str) -> Any:
    return make_config(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": "backup",
                "password": password,
                "tls": {"ca_certs": str(broker.tls.ca)},
                **unique_topics(),
            },
            "jobs": JOBS,
        }
    )


def test_tls_and_password_connect_and_nothing_leaks(
    tls_broker_factory, make_config, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = tls_broker_factory({"backup": PASSWORD, "reader": "reader-pw"})
    config = tls_config(make_config, broker, PASSWORD)
    topics = Topics(config.mqtt, config.instance)
    collector = Collector(
        broker.host, broker.port, ["#"], username="reader", password="reader-pw",
        ca_certs=str(broker.tls.ca),
    )  # fmt: skip
    publisher = DaemonPublisher(config)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        state = initial("photos", "photos").model_copy(update={"error": "could not reach nas"})
        publisher.publish_state(state)
        collector.wait_message(topics.state("photos"))
    finally:
        publisher.stop()
    states = read_retained_states(config, timeout=5)
    assert states is not None and states["photos"].error == "could not reach nas"
    collector.wait_message(topics.availability, lambda m: m.payload == b"offline")
    collector.close()
    assert collector.messages
    for message in collector.messages:
        assert PASSWORD.encode() not in message.payload and PASSWORD not in message.topic
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def test_wrong_password_gives_one_clear_error_and_no_retry_loop(
    tls_broker_factory, make_config, caplog
) -> None:
    broker = tls_broker_factory({"backup": PASSWORD})
    wrong = "wrong-" + PASSWORD
    config = tls_config(make_config, broker, wrong)
    publisher = DaemonPublisher(config)
    publisher.start()
    try:
        assert not publisher.wait_connected(10)
        assert isinstance(publisher.error, MqttError)
        assert str(publisher.error) == (
            "MQTT broker refused the login for user 'backup': bad user name or password"
        )
        attempts = broker.log_text().count("not authorised")
        time.sleep(2.5)  # longer than the back-off's first delay: a retry would show by now
        assert broker.log_text().count("not authorised") == attempts == 1
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "bad user name or password" in errors[0].getMessage()
    finally:
        publisher.stop()
    for record in caplog.records:
        assert wrong not in record.getMessage() and PASSWORD not in record.getMessage()
    with pytest.raises(MqttError, match="bad user name or password"):
        read_retained_states(config, timeout=5)
