"""``mqtt-backup serve`` end to end: real process, real mosquitto, real rclone, real time."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History
from tests.integration.cli_helpers import wait_for
from tests.integration.conftest import Broker
from tests.integration.mqtt_helpers import retained_snapshot
from tests.integration.serve_helpers import (
    Daemon,
    assert_no_overlap,
    make_config,
    make_tree,
    parse_ms,
    states,
)

# Slow runs: rclone's own bandwidth limit, and --ignore-times so every run transfers again.
SLOW = ["--bwlimit", "200k", "--ignore-times"]
MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def daemon(tmp_path: Path, rclone_binary: str) -> Iterator[MakeDaemon]:
    made: list[Daemon] = []

    def make(jobs: dict[str, dict[str, Any]], broker: Broker | None = None, **top: Any) -> Daemon:
        root = tmp_path / f"d{len(made)}"
        root.mkdir()
        d = Daemon(root, make_config(root, rclone_binary, jobs, broker, **top))
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def job(src: Path, dst: Path, **extra: Any) -> dict[str, Any]:
    return {"source": str(src), "destination": str(dst), **extra}


def pub(d: Daemon, job_id: str, command: str, payload: str = "") -> None:
    mqtt = d.config["mqtt"]
    subprocess.run(
        ["mosquitto_pub", "-h", mqtt["host"], "-p", str(mqtt["port"]), "-q", "1",
         "-t", f"{d.base}/jobs/{job_id}/{command}", "-m", payload],
        check=True, timeout=10,
    )  # fmt: skip


def test_interval_jobs_run_repeatedly_and_a_slow_one_never_overlaps(
    daemon: MakeDaemon, tmp_path: Path
) -> None:
    fast_src = make_tree(tmp_path / "fast")
    slow_src = make_tree(tmp_path / "slow", 1, 400_000)  # ~2 s at 200k/s: longer than 1 s
    d = daemon(
        {
            "fast": job(fast_src, tmp_path / "out1", schedule="every 1s"),
            "slow": job(slow_src, tmp_path / "out2", schedule="every 1s", extra_args=SLOW),
        }
    ).start()
    wait_for(lambda: len(d.finished("fast")) >= 3, 20, "3 runs of fast")
    wait_for(lambda: len(d.finished("slow")) >= 2, 20, "2 runs of slow")
    assert d.stop() == 0
    slow = [r for r in d.runs("slow") if r.error != "cancelled before it started"]
    assert_no_overlap(slow)
    completed = [r for r in slow if r.status == "completed"]
    for r in completed:
        assert parse_ms(r.finished_at or "") - parse_ms(r.started_at) > timedelta(seconds=1)
    assert {r.trigger for r in d.runs("fast")} == {"schedule"}


def test_max_concurrent_jobs_one_runs_jobs_one_at_a_time_and_shows_queued(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src", 1, 100_000)
    jobs = {
        name: job(src, tmp_path / name, schedule="every 1s", extra_args=SLOW)
        for name in ("a", "b", "c")
    }
    d = daemon(jobs, mosquitto, max_concurrent_jobs=1)
    collector = d.collector()
    d.start()
    for name in jobs:
        wait_for(lambda name=name: d.finished(name), 30, f"a run of {name}")
    collector.wait_for(
        lambda _m: any(
            s["status"] == "queued" for name in jobs for s in states(collector, d.state_topic(name))
        ),
        10,
    )
    assert d.stop() == 0
    ran = [
        r
        for name in jobs
        for r in d.runs(name)
        if r.error != "cancelled before it started"  # never held a slot
    ]
    assert len(ran) >= 3
    assert_no_overlap(ran)


def test_sigterm_cancels_the_run_publishes_cancelled_and_offline(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src", 3, 300_000)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    deleting = job(
        src,
        tmp_path / "dst",
        extra_args=SLOW,
        deletion={"mode": "verify_then_delete", "verify": "checksum"},
    )
    d = daemon({"mover": deleting}, mosquitto)
    collector = d.collector()
    d.start()
    collector.wait_message(f"{d.base}/availability", lambda m: m.payload == b"online", 10)
    assert d.healthcheck() == 0
    pub(d, "mover", "run")
    collector.wait_for(
        lambda _m: any(s["status"] == "running" for s in states(collector, d.state_topic("mover"))),
        10,
    )
    started = time.monotonic()
    assert d.stop(timeout=30) == 0
    assert time.monotonic() - started < 30
    retained = retained_snapshot(mosquitto.host, mosquitto.port, f"{d.base}/#")
    assert retained[f"{d.base}/availability"] == b"offline"
    final = st.JobState.from_json(retained[d.state_topic("mover")])
    assert final.status == "cancelled"
    assert final.deletion.files_deleted == 0
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert d.healthcheck() != 0


def test_after_sigkill_the_run_is_interrupted_on_the_broker_before_a_new_run(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src", 1, 400_000)
    d = daemon({"k": job(src, tmp_path / "dst", schedule="every 1s", extra_args=SLOW)}, mosquitto)
    collector = d.collector()
    topic = d.state_topic("k")
    d.start()
    first = collector.wait_for(
        lambda _m: next((s for s in states(collector, topic) if s["status"] == "running"), None),
        15,
    )
    d.kill()
    mark = len(states(collector, topic))
    d.start()

    def after_restart(_m: object) -> list[dict[str, Any]]:
        return states(collector, topic)[mark:]

    collector.wait_for(
        lambda m: any(s["run_id"] != first["run_id"] and s["status"] == "running"
                      for s in after_restart(m)),
        15,
    )  # fmt: skip
    seen = after_restart(None)
    interrupted = next(
        i
        for i, s in enumerate(seen)
        if s["status"] == "interrupted" and s["run_id"] == first["run_id"]
    )
    new_run = next(i for i, s in enumerate(seen) if s["run_id"] != first["run_id"])
    assert interrupted < new_run
    assert d.stop() == 0
    assert d.runs("k")[0].status == "interrupted"


def _seed_old_run(state_dir: Path, job_id: str, hours_ago: float) -> None:
    with History(state_dir) as history:
        started = datetime.now(UTC) - timedelta(hours=hours_ago)
        running = st.started(st.initial(job_id, job_id), f"seed{job_id}", "schedule", started)
        history.start_run(running)
        history.finish_run(st.finished(running, RunOutcome("completed"), started))


def test_catch_up_runs_once_for_a_missed_fire_and_never_when_switched_off(
    daemon: MakeDaemon, tmp_path: Path
) -> None:
    # No mqtt section: serve still schedules and keeps its history.
    src = make_tree(tmp_path / "src")
    d = daemon(
        {
            "yes": job(src, tmp_path / "d1", schedule="every 1h"),
            "no": job(src, tmp_path / "d2", schedule="every 1h", catch_up=False),
        }
    )
    for job_id in ("yes", "no"):
        _seed_old_run(d.state_dir, job_id, 2.5)  # missed the fires 1.5 h and 0.5 h ago
    d.start()
    wait_for(lambda: len(d.finished("yes")) == 2, 15, "the catch-up run")
    assert d.healthcheck() == 0
    assert d.stop() == 0
    assert [r.trigger for r in d.runs("yes")] == ["schedule", "catch_up"]
    assert [r.trigger for r in d.runs("no")] == ["schedule"]
    assert "job yes: missed its run" in d.log()


def test_a_retryable_failure_is_retried_and_a_missing_source_is_not(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the destination folder should be")
    d = daemon(
        {
            "flaky": job(src, blocker / "sub", retries=2, retry_delay="2s"),
            "gone": job(tmp_path / "missing", tmp_path / "d2", retries=2, retry_delay="1s"),
        },
        mosquitto,
    )
    collector = d.collector()
    d.start()
    collector.wait_message(f"{d.base}/availability", lambda m: m.payload == b"online", 10)
    pub(d, "flaky", "run")
    pub(d, "gone", "run")
    wait_for(lambda: d.finished("flaky", "failed"), 15, "the first attempt to fail")
    blocker.unlink()
    blocker.mkdir()  # the destination is available now
    wait_for(lambda: d.finished("flaky"), 15, "the retry to succeed")
    wait_for(lambda: d.finished("gone", "failed"), 15, "the missing source to fail")
    assert d.stop() == 0
    assert [(r.attempt, r.status) for r in d.runs("flaky")] == [(1, "failed"), (2, "completed")]
    assert [(r.attempt, r.status) for r in d.runs("gone")] == [(1, "failed")]
    assert (blocker / "sub" / "file0.bin").exists()


def test_run_and_cancel_commands_and_no_second_run_of_a_running_job(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src", 1, 1_000_000)
    d = daemon({"c": job(src, tmp_path / "dst", extra_args=SLOW)}, mosquitto)
    collector = d.collector()
    topic = d.state_topic("c")
    d.start()
    collector.wait_message(f"{d.base}/availability", lambda m: m.payload == b"online", 10)
    pub(d, "c", "run")
    running = collector.wait_for(
        lambda _m: next((s for s in states(collector, topic) if s["status"] == "running"), None),
        10,
    )
    assert running["trigger"] == "command"
    pub(d, "c", "run")
    d.wait_log("job c: run command coalesced: a run is already queued or running")
    pub(d, "c", "cancel")
    collector.wait_for(
        lambda _m: any(s["status"] == "cancelled" and s["run_id"] == running["run_id"]
                       for s in states(collector, topic)),
        15,
    )  # fmt: skip
    assert d.stop() == 0
    assert [r.status for r in d.runs("c")] == ["cancelled"]


def test_enabled_switch_pauses_the_schedule_across_a_restart_and_resumes_it(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src")
    d = daemon({"p": job(src, tmp_path / "dst", schedule="every 1s")}, mosquitto)
    collector = d.collector()
    topic = d.state_topic("p")
    d.start()
    wait_for(lambda: d.finished("p"), 15, "a scheduled run")
    pub(d, "p", "enabled/set", "OFF")
    collector.wait_for(
        lambda _m: any(s["enabled"] is False and s["next_run_at"] is None
                       for s in states(collector, topic)),
        10,
    )  # fmt: skip
    wait_for(lambda: all(r.finished_at for r in d.runs("p")), 10, "the last run to end")
    paused_at = len(d.runs("p"))
    time.sleep(2.5)  # nothing to wait on: the point is that no run starts in 2.5 intervals
    assert len(d.runs("p")) == paused_at
    assert d.stop() == 0

    mark = len(states(collector, topic))
    d.start()
    collector.wait_for(lambda _m: states(collector, topic)[mark:], 10)
    restarted = states(collector, topic)[mark]
    assert (restarted["enabled"], restarted["next_run_at"]) == (False, None)
    time.sleep(1.5)  # again: no run may start while paused
    assert len(d.runs("p")) == paused_at
    pub(d, "p", "enabled/set", "ON")
    wait_for(lambda: len(d.finished("p")) > paused_at, 10, "runs after ON")
    assert d.stop() == 0


def test_commands_are_ignored_when_not_allowed(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src")
    d = daemon({"m": job(src, tmp_path / "dst")}, mosquitto)
    d.config["mqtt"]["allow_commands"] = False
    d.write(d.config)
    collector = d.collector()
    d.start()
    collector.wait_message(d.state_topic("m"), timeout=10)
    pub(d, "m", "run")
    time.sleep(1.5)  # nothing to wait on: the point is that no run starts
    assert d.runs("m") == []
    assert d.stop() == 0


def test_sighup_reload_adds_and_removes_jobs_and_survives_a_broken_file(
    daemon: MakeDaemon, tmp_path: Path, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src")
    d = daemon({"old": job(src, tmp_path / "d1", schedule="every 1s")}, mosquitto)
    collector = d.collector()
    d.start()
    collector.wait_message(d.discovery_topic("old"), lambda m: bool(m.payload), 10)
    wait_for(lambda: d.finished("old"), 15, "a run of old")

    config = dict(d.config, jobs={"new": job(src, tmp_path / "d2", schedule="every 1s")})
    d.write(config)
    d.send(signal.SIGHUP)
    collector.wait_message(d.discovery_topic("new"), lambda m: bool(m.payload), 10)
    wait_for(lambda: d.finished("new"), 15, "a run of the added job")
    for topic in (d.state_topic("old"), d.discovery_topic("old")):
        collector.wait_message(topic, lambda m: m.payload == b"" and m.retain is False, 10)
    retained = retained_snapshot(mosquitto.host, mosquitto.port, f"{d.prefix}/#")
    assert d.discovery_topic("old") not in retained

    d.path.write_text(d.path.read_text().replace("every 1s", "every banana"))
    d.send(signal.SIGHUP)
    d.wait_log("is invalid; keeping the running configuration")
    d.wait_log("jobs.new.schedule")
    runs = len(d.runs("new"))
    wait_for(lambda: len(d.runs("new")) > runs + 1, 10, "the old config to keep running")
    assert d.stop() == 0
