"""serve's HTTP endpoint and run-job's metrics file: real processes, mosquitto and rclone.

The metrics are read back with prometheus_client's own parser, the way Prometheus reads
them, and compared with what the history recorded for the same runs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mqtt_backup import __version__
from mqtt_backup.jobs.history import History, RunRecord
from tests.integration.cli_helpers import run_cli, wait_for, write_config
from tests.integration.conftest import Broker, free_port
from tests.integration.serve_helpers import Daemon, make_config, make_tree, parse_ms

# About 1.5 s per run (rclone's own bandwidth limit), transferring again every time.
SLOW = ["--bwlimit", "200k", "--ignore-times"]
Metrics = dict[str, dict[tuple[tuple[str, str], ...], float]]


def get(url: str) -> tuple[int, bytes]:
    """The status and body; status 0 while nothing listens (serve is still starting)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return 0, b"{}"
        raise


def scrape(port: int) -> Metrics:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    out: Metrics = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def of(metrics: Metrics, name: str, job: str = "photos", **labels: str) -> float | None:
    key = tuple(sorted({"job_id": job, **labels}.items()))
    return metrics.get(f"mqtt_backup_job_{name}", {}).get(key)


def health(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://127.0.0.1:{port}{path}")
    return status, json.loads(body)


def seconds(text: str | None) -> float:
    assert text is not None
    return parse_ms(text).timestamp()


def assert_matches(metrics: Metrics, run: RunRecord) -> None:
    """The last-run series say what the history recorded for ``run``."""
    assert of(metrics, "last_run_status", status=run.status) == 1
    assert sum(of(metrics, "last_run_status", status=s) or 0 for s in
               ("completed", "failed", "cancelled", "skipped", "interrupted")) == 1  # fmt: skip
    assert of(metrics, "last_run_transferred_bytes") == run.bytes_transferred > 0
    assert of(metrics, "last_run_transferred_files") == run.files_transferred == 1
    assert of(metrics, "last_run_deleted_files") == run.files_deleted
    assert of(metrics, "last_run_kept_files") == run.files_kept
    # The history keeps milliseconds; the state keeps more.
    assert of(metrics, "last_run_timestamp_seconds") == pytest.approx(
        seconds(run.finished_at), abs=0.001
    )
    duration = seconds(run.finished_at) - seconds(run.started_at)
    assert of(metrics, "last_run_duration_seconds") == pytest.approx(duration, abs=0.002)
    # Every run here completes: the last success is when the run finished.
    assert run.status == "completed"
    assert of(metrics, "last_success_timestamp_seconds") == pytest.approx(
        seconds(run.finished_at), abs=0.001
    )


@pytest.fixture
def serve(tmp_path: Path, rclone_binary: str) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(broker: Broker | None, port: int, **job: Any) -> Daemon:
        root = tmp_path / f"d{len(made)}"
        root.mkdir()
        source = make_tree(root / "src", 1, 300_000)
        photos = {"source": str(source), "destination": str(root / "dst"), **job}
        config = make_config(
            root, rclone_binary, {"photos": photos}, broker, http={"listen": f"127.0.0.1:{port}"}
        )
        d = Daemon(root, config)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def command(d: Daemon, job: str, name: str) -> None:
    mqtt = d.config["mqtt"]
    subprocess.run(
        ["mosquitto_pub", "-h", mqtt["host"], "-p", str(mqtt["port"]), "-q", "1",
         "-t", f"{d.base}/jobs/{job}/{name}", "-m", ""],
        check=True, timeout=10,
    )  # fmt: skip


def test_metrics_match_the_history_and_healthz_follows_the_broker(
    serve: Callable[..., Daemon], broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory()
    port = free_port()
    # A yearly schedule that never fires in the test, and a short stale_after to see overdue.
    d = serve(broker, port, schedule="0 0 1 1 *", catch_up=False, stale_after="4s",
              extra_args=SLOW).start()  # fmt: skip
    wait_for(lambda: health(port)[0] == 200, 20, "/healthz to answer 200")
    assert health(port) == (200, {"status": "ok"})
    assert d.healthcheck() == 0  # the heartbeat file works as before
    # The port is taken, by this config's own serve: nothing to warn about.
    checked = run_cli(d.path, "validate", timeout=30)
    assert checked.returncode == 0 and "http.listen" not in checked.stderr, checked.stderr

    before = scrape(port)
    assert before["mqtt_backup_info"] == {
        (("instance_id", "t"), ("version", __version__)): 1.0
    }
    assert before["mqtt_backup_mqtt_connected"] == {(): 1.0}
    assert of(before, "running") == 0 and of(before, "overdue") == 0
    assert of(before, "stale_after_seconds") == 4
    assert (of(before, "next_run_timestamp_seconds") or 0) > time.time()
    assert of(before, "last_run_status", status="completed") is None  # never ran

    command(d, "photos", "run")
    wait_for(lambda: d.finished("photos"), 30, "the first run")
    first = d.runs("photos")[-1]
    # The history has the run a moment before the job's state says it ended.
    ended = wait_for(lambda: (m := scrape(port)) and of(m, "running") == 0 and m, 10, "idle")
    assert_matches(ended, first)

    # While the next run goes on, the last finished run is still the first one.
    command(d, "photos", "run")
    during = wait_for(lambda: (m := scrape(port)) and of(m, "running") == 1 and m, 20, "running")
    assert_matches(during, first)
    wait_for(lambda: len(d.finished("photos")) == 2, 30, "the second run")
    second = d.runs("photos")[-1]
    after = wait_for(lambda: (m := scrape(port)) and of(m, "running") == 0 and m, 10, "idle")
    assert_matches(after, second)

    # Overdue as Home Assistant's sensor says it: the last success is older than stale_after.
    overdue = wait_for(lambda: (m := scrape(port)) and of(m, "overdue") == 1 and m, 20, "overdue")
    assert time.time() - (of(overdue, "last_success_timestamp_seconds") or 0) > 4

    broker.stop()
    status, body = wait_for(lambda: (h := health(port))[0] == 503 and h, 20, "/healthz 503")
    assert body["status"] == "unhealthy"
    assert body["reason"].startswith(f"MQTT broker 127.0.0.1:{broker.port} not connected")
    assert health(port, "/livez") == (200, {"status": "ok"})  # the backups go on without it
    assert scrape(port)["mqtt_backup_mqtt_connected"] == {(): 0.0}
    assert d.healthcheck() == 0

    broker.start()
    wait_for(lambda: health(port)[0] == 200, 40, "/healthz 200 after the broker came back")
    assert get(f"http://127.0.0.1:{port}/nothing-here")[0] == 404
    assert d.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()


def test_without_mqtt_healthz_asks_only_the_scheduler(serve: Callable[..., Daemon]) -> None:
    port = free_port()
    d = serve(None, port).start()
    wait_for(lambda: health(port)[0] == 200, 20, "/healthz to answer 200")
    assert health(port) == (200, {"status": "ok"})
    assert "mqtt_backup_mqtt_connected" not in scrape(port)
    assert d.stop() == 0


def test_a_port_in_use_stops_serve_with_one_sentence(serve: Callable[..., Daemon]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = serve(None, port)
        checked = run_cli(d.path, "validate", timeout=30)
        result = run_cli(d.path, "serve", timeout=30)
    # validate cannot know whether the port will be free when serve starts: a warning.
    assert checked.returncode == 0, checked.stderr
    assert (
        f"warning: http.listen: serve cannot listen on 127.0.0.1:{port} now: the port is "
        "already in use (by another serve, or another program) (line "
    ) in checked.stderr
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"mqtt-backup: cannot listen on 127.0.0.1:{port} (http.listen): the port is already "
        "in use (by another serve, or another program)"
    )
    assert "Traceback" not in result.stderr


def test_run_job_writes_the_metrics_file_node_exporter_reads(
    tmp_path: Path, rclone_binary: str
) -> None:
    source = make_tree(tmp_path / "src", 1, 5000)
    config = {
        "instance": "t",
        "state_dir": str(tmp_path / "state"),
        "rclone": {"binary": rclone_binary},
        "jobs": {"photos": {"source": str(source), "destination": str(tmp_path / "dst"),
                            "schedule": "every 1d"}},
    }  # fmt: skip
    path = write_config(tmp_path / "c.yaml", config)
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    prom = textfiles / "mqtt_backup_photos.prom"

    result = run_cli(path, "run-job", "photos", "--metrics-file", str(prom))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in textfiles.iterdir()] == [prom.name]  # no temporary file left
    metrics: Metrics = {}
    for family in text_string_to_metric_families(prom.read_text()):
        for sample in family.samples:
            metrics.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    with History(tmp_path / "state") as history:
        [run] = history.runs("photos")
    assert_matches(metrics, run)
    assert of(metrics, "running") == 0 and of(metrics, "overdue") == 0
    assert of(metrics, "stale_after_seconds") == 2 * 86400 + 3600
    # Files of several jobs side by side: no series that each of them would repeat.
    assert not [name for name in metrics if not name.startswith("mqtt_backup_job_")]

    # A folder that does not exist is refused before anything runs.
    missing = tmp_path / "nowhere" / "photos.prom"
    result = run_cli(path, "run-job", "photos", "--metrics-file", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == f"mqtt-backup: --metrics-file: {missing.parent} is not a folder"
    with History(tmp_path / "state") as history:
        assert len(history.runs("photos")) == 1
