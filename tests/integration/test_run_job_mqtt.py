"""`run-job` with MQTT: real rclone, real mosquitto, subscribers that connect late."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import make_tree, run_cli, tree, wait_for, write_config
from tests.integration.mqtt_helpers import retained_snapshot, unique_topics
from tests.integration.serve_helpers import Daemon

FILES = {f"dir {i}/é{i}.bin": os.urandom(20_000 + i) for i in range(30)} | {"empty": b""}


@pytest.fixture
def mqtt_job(tmp_path: Path, rclone_binary: str, mosquitto):  # type: ignore[no-untyped-def]
    topics = unique_topics()

    def build(**job: Any) -> tuple[Path, str, str]:
        config = {
            "instance": "lab",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, **topics},
            "jobs": {
                "photos": {
                    "name": "Photos",
                    "source": str(tmp_path / "src"),
                    "destination": str(tmp_path / "dst"),
                    **job,
                }
            },
        }
        base = f"{topics['base_topic']}/lab"
        return write_config(tmp_path / "c.yaml", config), base, topics["discovery_prefix"]

    return build


def retained_json(broker: Any, topic: str) -> Any:
    snapshot = retained_snapshot(broker.host, broker.port, topic)
    assert topic in snapshot, f"nothing retained on {topic}"
    return json.loads(snapshot[topic])


def test_late_subscriber_sees_the_completed_verify_then_delete_run(
    tmp_path: Path, mqtt_job, mosquitto
) -> None:  # type: ignore[no-untyped-def]
    make_tree(tmp_path / "src", FILES)
    config, base, prefix = mqtt_job(deletion={"mode": "verify_then_delete"})
    result = run_cli(config, "run-job", "photos")
    assert result.returncode == 0, result.stderr
    assert "not published" not in result.stderr
    # Its own "online" comes back on the availability topic it read on connect: no warning.
    assert "WARNING" not in result.stderr, result.stderr
    assert tree(tmp_path / "dst") == FILES
    assert tree(tmp_path / "src") == {}

    # The process has exited; a subscriber connecting now must see how the run ended.
    state = retained_json(mosquitto, f"{base}/jobs/photos/state")
    assert state["status"] == "completed"
    assert state["phase"] == "done"
    assert state["percent"] == 100
    assert state["trigger"] == "cli"
    assert state["deletion"] == {
        "enabled": True,
        "mode": "verify_then_delete",
        "phase": "done",
        "files_verified": len(FILES),
        "files_deleted": len(FILES),
        "bytes_deleted": sum(len(v) for v in FILES.values()),
        "files_kept": 0,
        "kept": {},
    }
    assert state["finished_at"].endswith("Z")
    assert state["last_success_at"] == state["finished_at"]

    snapshot = retained_snapshot(mosquitto.host, mosquitto.port, f"{prefix}/#")
    assert f"{prefix}/device/lab_photos/config" in snapshot
    # No daemon ever ran: the one-shot marks the instance available, never offline.
    availability = retained_snapshot(mosquitto.host, mosquitto.port, f"{base}/availability")
    assert availability == {f"{base}/availability": b"online"}

    status = run_cli(config, "status", "--json")
    assert json.loads(status.stdout)["photos"]["status"] == "completed"
    assert "from broker" not in status.stdout  # JSON only


def test_late_subscriber_sees_a_failed_run_with_its_error(
    tmp_path: Path, mqtt_job, mosquitto
) -> None:  # type: ignore[no-untyped-def]
    config, base, _ = mqtt_job()
    result = run_cli(config, "run-job", "photos")
    assert result.returncode == 1
    state = retained_json(mosquitto, f"{base}/jobs/photos/state")
    assert state["status"] == "failed"
    assert state["last_result"] == "failed"
    assert state["error"] == "source directory not found"
    assert state["last_success_at"] is None


def test_status_reads_the_broker_falls_back_to_history_and_shows_the_newer_run(
    tmp_path: Path, mqtt_job, mosquitto
) -> None:  # type: ignore[no-untyped-def]
    make_tree(tmp_path / "src", {"a": b"1"})
    config, _, _ = mqtt_job()
    assert run_cli(config, "run-job", "photos").returncode == 0
    table = run_cli(config, "status")
    assert "from broker" in table.stdout
    assert "completed" in table.stdout

    # Point the same history at a port where no broker listens.
    text = config.read_text().replace(f"port: {mosquitto.port}", "port: 1")
    offline = tmp_path / "offline.yaml"
    offline.write_text(text)
    table = run_cli(offline, "status")
    assert table.returncode == 0
    assert "from local history" in table.stdout
    assert "completed" in table.stdout

    # A run that ends while the broker is away is newer than what the broker retained.
    time.sleep(1.1)  # the payload's times have whole seconds
    shutil.rmtree(tmp_path / "src")
    assert run_cli(offline, "run-job", "photos").returncode == 1
    table = run_cli(config, "status")
    assert "from broker and local history" in table.stdout
    assert "failed" in table.stdout
    assert "completed" not in table.stdout


def test_a_broker_down_for_the_whole_run_gets_the_state_from_serve(
    tmp_path: Path, rclone_binary: str, broker_factory
) -> None:  # type: ignore[no-untyped-def]
    broker = broker_factory()
    topics = unique_topics()
    make_tree(tmp_path / "src", {"a": b"1"})
    settings = {
        "instance": "lab",
        "state_dir": str(tmp_path / "state"),
        "rclone": {"binary": rclone_binary},
        "mqtt": {"host": broker.host, "port": broker.port, **topics},
        "jobs": {"photos": {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}},
    }
    config = write_config(tmp_path / "c.yaml", settings)
    broker.stop()
    started = time.monotonic()
    result = run_cli(config, "run-job", "photos")
    assert result.returncode == 0, result.stderr  # the backup does not depend on the broker
    assert time.monotonic() - started < 20
    assert "the state of photos was not published" in result.stderr
    assert "disconnected from MQTT broker" not in result.stderr  # it never was connected
    status = run_cli(config, "status", "--json")
    assert json.loads(status.stdout)["photos"]["status"] == "completed"  # from local history

    broker.start()  # empty: no persistence
    daemon = Daemon(tmp_path, settings)
    daemon.start()
    try:
        state = wait_for(
            lambda: _retained_state(broker, f"{topics['base_topic']}/lab/jobs/photos/state"),
            what="serve to publish the state the broker missed",
        )
        assert state["status"] == "completed"
        assert state["trigger"] == "cli"
    finally:
        assert daemon.stop() == 0


def _retained_state(broker: Any, topic: str) -> Any:
    snapshot = retained_snapshot(broker.host, broker.port, topic)
    return json.loads(snapshot[topic]) if topic in snapshot else None
