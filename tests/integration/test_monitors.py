"""Monitors end to end: real run-job and serve, real rclone, a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.sinks.monitors.healthchecks import run_uuid
from tests.integration.cli_helpers import run_cli, runs_of, wait_for, write_config
from tests.integration.conftest import Broker, free_port
from tests.integration.http_recorder import Recorded, Recorder
from tests.integration.mqtt_helpers import Collector, unique_base
from tests.integration.serve_helpers import Daemon
from tests.integration.test_serve import pub

# Secrets a leak would show: the Healthchecks ping key, the ntfy topic, a webhook token,
# the sftp password (raw and as rclone.conf stores it).
PING_KEY = "PK4r7Yt2Qw8Zx1Vb6Nm3Lk"
TOPIC = "alerts-q8Zt3"
BEARER = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0"
PASSWORD = "hunter2-very-secret"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder().start()
    yield made
    made.stop()


def obscured(rclone: str, password: str) -> str:
    done = subprocess.run([rclone, "obscure", password], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def monitors(recorder: Recorder) -> list[dict[str, Any]]:
    return [
        {"healthchecks": recorder.url(f"/hc/{PING_KEY}/{{job}}")},
        {"uptime_kuma": recorder.url("/api/push/Xk3pQ9vB2m?status=up&msg=OK&ping=")},
        {"ntfy": recorder.url(f"/{TOPIC}")},
        {
            "webhook": {
                "url": recorder.url("/hook"),
                "headers": {"Authorization": f"Bearer {BEARER}"},
            }
        },
    ]


def setup(
    root: Path, rclone: str, recorder: Recorder, *, broker: Broker | None = None, **top: Any
) -> dict[str, Any]:
    """Two jobs: ``ok`` copies a folder; ``bad`` reads from an sftp server that is not there."""
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    (source / "a.txt").write_text("a")
    unreachable = (
        f":sftp,host=127.0.0.1,port={free_port()},user=backup,"
        f"pass={obscured(rclone, PASSWORD)}:/data"
    )
    config: dict[str, Any] = {
        "instance": "t",
        "state_dir": str(root / "state"),
        "rclone": {"binary": rclone},
        "monitors": monitors(recorder),
        # One try a second at most, so an outage ends within the test.
        "monitor_delivery": {"timeout": "2s", "max_delay": "1s"},
        "jobs": {
            "ok": {"source": str(source), "destination": str(root / "dst")},
            "bad": {
                "source": unreachable,
                "destination": str(root / "dst-bad"),
                "extra_args": ["--retries", "1", "--low-level-retries", "1"],
            },
        },
    }
    if broker is not None:
        base = unique_base()
        config["mqtt"] = {
            "host": broker.host,
            "port": broker.port,
            "base_topic": base,
            "discovery_prefix": f"{base}_ha",
        }
    return config | top


def healthchecks(recorder: Recorder, job: str) -> list[tuple[str, str | None]]:
    """(endpoint, run uuid) of each Healthchecks ping of ``job``, in the order received."""
    prefix = f"/hc/{PING_KEY}/{job}"
    return [
        (r.path.removeprefix(prefix).lstrip("/") or "success", r.param("rid"))
        for r in recorder.seen(lambda r: r.path.startswith(prefix))
    ]


def everything(recorder: Recorder) -> str:
    """All that reached the receiver, as text: paths, queries, headers and bodies."""
    return "\n".join(
        f"{r.method} {r.path} {r.query} {r.headers} {r.body.decode('utf-8', 'replace')}"
        for r in recorder.seen()
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, PING_KEY, TOPIC, BEARER):
            assert secret not in text


def test_a_completed_run_pings_start_then_success_and_each_kind_its_request(
    tmp_path: Path, rclone_binary: str, recorder: Recorder
) -> None:
    config = write_config(tmp_path / "c.yaml", setup(tmp_path, rclone_binary, recorder))
    done = run_cli(config, "--log-level", "DEBUG", "run-job", "ok")
    assert done.returncode == 0, done.stderr
    run = runs_of(tmp_path / "state", "ok")[0]
    # run-job waited for its pings before it exited.
    assert healthchecks(recorder, "ok") == [
        ("start", run_uuid(run.run_id)),
        ("success", run_uuid(run.run_id)),
    ]
    kuma = recorder.seen(lambda r: r.path == "/api/push/Xk3pQ9vB2m")
    assert [(r.method, r.param("status")) for r in kuma] == [("GET", "up")]
    assert recorder.seen(lambda r: r.path == f"/{TOPIC}") == []  # ntfy: problems only
    (hook,) = recorder.seen(lambda r: r.path == "/hook")
    payload = json.loads(hook.body)
    assert (payload["job_id"], payload["status"], payload["ending"]) == (
        "ok",
        "completed",
        "completed",
    )
    assert payload["run_id"] == run.run_id
    assert hook.headers["authorization"] == f"Bearer {BEARER}"
    assert_no_secret(done.stderr)


def test_a_failed_run_pings_start_then_fail_with_the_error_and_no_secret(
    tmp_path: Path, rclone_binary: str, recorder: Recorder
) -> None:
    config = write_config(tmp_path / "c.yaml", setup(tmp_path, rclone_binary, recorder))
    done = run_cli(config, "--log-level", "DEBUG", "run-job", "bad")
    assert done.returncode == 1
    run = runs_of(tmp_path / "state", "bad")[0]
    assert run.status == "failed" and run.error
    pings = healthchecks(recorder, "bad")
    assert [rid for _, rid in pings] == [run_uuid(run.run_id)] * 2
    assert pings[0][0] == "start"
    assert pings[1][0] == "fail" or pings[1][0].isdigit()  # rclone's exit status
    (fail,) = recorder.seen(
        lambda r: r.path.startswith(f"/hc/{PING_KEY}/bad/") and "start" not in r.path
    )
    assert run.error in fail.text
    assert "connection refused" in fail.text
    assert "rclone's last log lines:" in fail.text
    (ntfy,) = recorder.seen(lambda r: r.path == f"/{TOPIC}")
    assert ntfy.param("title") == "Backup bad failed" and ntfy.param("priority") == "4"
    kuma = recorder.seen(lambda r: r.path == "/api/push/Xk3pQ9vB2m")
    assert [r.param("status") for r in kuma] == ["down"]
    obscured_password = obscured(rclone_binary, PASSWORD)
    sent = everything(recorder)
    assert PASSWORD not in sent and obscured_password not in sent
    assert_no_secret(done.stderr)
    assert obscured_password not in done.stderr


def run_pings(recorder: Recorder, job: str, run_id: str) -> list[str]:
    rid = run_uuid(run_id)
    return [endpoint for endpoint, got in healthchecks(recorder, job) if got == rid]


def test_a_fail_ping_survives_an_outage_and_a_restart_and_arrives_once(
    tmp_path: Path, rclone_binary: str, recorder: Recorder
) -> None:
    recorder.stop()
    config = setup(tmp_path, rclone_binary, recorder)
    path = write_config(tmp_path / "c.yaml", config)
    started = time.monotonic()
    done = run_cli(path, "run-job", "bad")
    assert done.returncode == 1
    assert time.monotonic() - started < 15  # waited monitor_delivery.timeout, not more
    assert "could not be delivered: connection refused" in done.stderr
    assert_no_secret(done.stderr)
    run = runs_of(tmp_path / "state", "bad")[0]

    # The receiver is back: the next process (here serve) delivers, in order, once.
    recorder.start()
    daemon = Daemon(tmp_path, config).start()
    try:
        wait_for(lambda: len(run_pings(recorder, "bad", run.run_id)) >= 2, 20, "the pings")
        assert daemon.stop() == 0
        # And a serve after that has nothing left to send.
        daemon.start()
        daemon.wait_log("serving instance")
        time.sleep(2.5)  # more than two retry intervals
        assert daemon.stop() == 0
    finally:
        daemon.close()
    endpoints = run_pings(recorder, "bad", run.run_id)
    assert endpoints[0] == "start" and len(endpoints) == 2
    assert endpoints[1] == "fail" or endpoints[1].isdigit()


def test_serve_keeps_pings_across_its_restart_while_the_receiver_is_down(
    tmp_path: Path, rclone_binary: str, recorder: Recorder, mosquitto: Broker
) -> None:
    recorder.stop()
    config = setup(tmp_path, rclone_binary, recorder, broker=mosquitto)
    daemon = Daemon(tmp_path, config).start()
    collector = daemon.collector()
    try:
        daemon.wait_log("serving instance")
        pub(daemon, "bad", "run", "PRESS")
        run = wait_for(lambda: daemon.finished("bad", "failed"), 30, "the failed run")[0]
        # The broker has the terminal state while every ping still waits.
        collector.wait_for(
            lambda ms: any(
                m.payload and m.json().get("status") == "failed"
                for m in ms
                if m.topic == daemon.state_topic("bad")
            ),
            10,
        )
        daemon.wait_log("could not be delivered: connection refused")
        assert daemon.stop() == 0
        assert recorder.seen() == []

        recorder.start()
        daemon.start()
        wait_for(lambda: len(run_pings(recorder, "bad", run.run_id)) >= 2, 20, "the pings")
        time.sleep(2.5)
        assert daemon.stop() == 0
    finally:
        collector.close()
        daemon.close()
    endpoints = run_pings(recorder, "bad", run.run_id)
    assert endpoints[0] == "start" and len(endpoints) == 2
    assert_no_secret(daemon.log())


def test_a_receiver_that_hangs_delays_neither_the_run_nor_its_terminal_state(
    tmp_path: Path, rclone_binary: str, recorder: Recorder, mosquitto: Broker
) -> None:
    recorder.delay = 3.0
    config = setup(tmp_path, rclone_binary, recorder, broker=mosquitto)
    config["monitor_delivery"] = {"timeout": "10s"}
    path = write_config(tmp_path / "c.yaml", config)
    topic = f"{config['mqtt']['base_topic']}/t/jobs/ok/state"
    collector = Collector(mosquitto.host, mosquitto.port, [topic])
    try:
        done = run_cli(path, "run-job", "ok")
        assert done.returncode == 0, done.stderr
        terminal = collector.wait_for(
            lambda ms: [m for m in ms if m.payload and m.json().get("status") == "completed"], 10
        )[0]
    finally:
        collector.close()
    first: Recorded = recorder.seen()[0]
    # The first ping was held for 3 s; the state was on the broker long before that.
    assert terminal.at < first.at + 2.0
    # Every ping still arrived, each once, the start before the success.
    assert [e for e, _ in healthchecks(recorder, "ok")] == ["start", "success"]


def test_monitors_added_by_a_reload_report_the_next_run(
    tmp_path: Path, rclone_binary: str, recorder: Recorder, mosquitto: Broker
) -> None:
    config = setup(tmp_path, rclone_binary, recorder, broker=mosquitto)
    without = {key: value for key, value in config.items() if key != "monitors"}
    daemon = Daemon(tmp_path, without).start()
    try:
        daemon.wait_log("serving instance")
        daemon.write(config)
        daemon.send(signal.SIGHUP)
        daemon.wait_log("reloaded")
        pub(daemon, "ok", "run", "PRESS")
        run = wait_for(lambda: daemon.finished("ok"), 30, "the run")[0]
        wait_for(lambda: len(run_pings(recorder, "ok", run.run_id)) >= 2, 20, "the pings")
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert run_pings(recorder, "ok", run.run_id) == ["start", "success"]
