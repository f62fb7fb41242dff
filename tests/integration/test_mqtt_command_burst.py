"""A burst of run commands, as from a "run all backups" automation: every one is run, once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqtt_backup.jobs.history import History
from tests.integration.cli_helpers import wait_for
from tests.integration.conftest import Broker
from tests.integration.mqtt_helpers import Collector
from tests.integration.serve_helpers import Daemon, make_config, make_tree

pytestmark = pytest.mark.timeout(600)
JOBS = 250


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        d.close()


def runs_by_job(d: Daemon) -> dict[str, list[str]]:
    with History(d.state_dir) as history:
        return {job: [r.status for r in history.runs(job, 10)] for job in d.config["jobs"]}


def wait_until_every_job_ran(d: Daemon, stall: float = 30) -> None:
    """Wait while runs keep finishing; fail once none has for ``stall`` seconds."""
    done, last_change = 0, time.monotonic()
    while True:
        now_done = sum(1 for runs in runs_by_job(d).values() if runs)
        if now_done == len(d.config["jobs"]):
            return
        if now_done != done:
            done, last_change = now_done, time.monotonic()
        assert time.monotonic() - last_change < stall, f"only {done} jobs ran: the rest were lost"
        time.sleep(0.5)


def test_a_run_command_for_each_of_250_jobs_runs_every_job_once(
    daemon: list[Daemon], tmp_path: Path, rclone_binary: str, broker_factory: Callable[..., Broker]
) -> None:
    # A broker of its own: a thousand retained topics would crowd the shared one's
    # subscribers past mosquitto's queue limit in later tests.
    mosquitto = broker_factory()
    src = make_tree(tmp_path / "src", 1, 100)
    jobs = {
        f"j{n:03}": {"source": str(src), "destination": str(tmp_path / "out" / f"j{n:03}")}
        for n in range(JOBS)
    }
    root = tmp_path / "d"
    root.mkdir()
    config = make_config(root, rclone_binary, jobs, mosquitto, max_concurrent_jobs=4)
    d = Daemon(root, config)
    daemon.append(d)
    watcher = Collector(mosquitto.host, mosquitto.port, [f"{d.base}/availability"])
    d.start()
    watcher.wait_message(f"{d.base}/availability", lambda m: m.payload == b"online", 30)
    for job in jobs:  # as fast as the broker takes them
        watcher.publish(f"{d.base}/jobs/{job}/run", "PRESS")
    watcher.close()

    wait_until_every_job_ran(d)
    wait_for(
        lambda: all(r != ["running"] for r in runs_by_job(d).values()), 60, "the last runs to end"
    )
    assert d.stop() == 0
    runs = runs_by_job(d)
    assert {job: statuses for job, statuses in runs.items() if statuses != ["completed"]} == {}
    assert all((tmp_path / "out" / job / "file0.bin").exists() for job in jobs)
    log = d.log()
    assert "too many commands" not in log and "coalesced" not in log


def test_a_run_command_for_a_queued_or_running_job_is_coalesced_and_logged(
    daemon: list[Daemon], tmp_path: Path, rclone_binary: str, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src", 1, 400_000)
    jobs = {
        "slow": {"source": str(src), "destination": str(tmp_path / "o1"),
                 "extra_args": ["--bwlimit", "200k"]},
        "quick": {"source": str(src), "destination": str(tmp_path / "o2")},
    }  # fmt: skip
    root = tmp_path / "d"
    root.mkdir()
    d = Daemon(root, make_config(root, rclone_binary, jobs, mosquitto, max_concurrent_jobs=1))
    daemon.append(d)
    watcher = d.collector()
    d.start()
    watcher.wait_message(f"{d.base}/availability", lambda m: m.payload == b"online", 30)
    watcher.publish(f"{d.base}/jobs/slow/run", "")
    watcher.wait_message(d.state_topic("slow"), lambda m: m.json()["status"] == "running", 10)
    for job in ("quick", "quick", "slow", "quick"):
        watcher.publish(f"{d.base}/jobs/{job}/run", "")
    watcher.wait_message(d.state_topic("quick"), lambda m: m.json()["status"] == "queued", 10)
    wait_for(lambda: len(d.finished("quick")) == 1, 30, "the queued run of quick")
    assert d.stop() == 0
    watcher.close()
    assert [r.status for r in d.runs("slow")] == ["completed"]
    assert [r.status for r in d.runs("quick")] == ["completed"]
    log = d.log()
    # Whether the inbox or the app saw the repeat first, each one is logged as coalesced.
    assert log.count("job quick: run command coalesced") == 2, log
    assert log.count("job slow: run command coalesced: a run is already queued or running") == 1
