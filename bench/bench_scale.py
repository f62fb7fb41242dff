"""5. Scale: ``serve`` with many jobs: start-up publishing, retained read-back, idle RSS and CPU."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import MQTT_BACKUP, Env, proc_cpu
from tests.support.mqtt import Collector, Received

GOALS = {"publish_all": 3.0, "fresh_subscriber": 1.0, "rss_mb": 80.0, "cpu_percent": 1.0}
BASE = "bench_scale"
INSTANCE = "scale"


def _proc_status(pid: int) -> dict[str, str]:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def _kib(value: str) -> float:
    return int(value.split()[0]) / 1024


def run(env: Env) -> dict[str, Any]:
    jobs = 50 if env.quick else 1000
    idle_seconds = 3.0 if env.quick else 60.0
    settle = 1.0 if env.quick else 5.0
    state = env.fresh("state-scale")
    job_configs = {
        f"job{n:04d}": {
            "name": f"Backup {n}",
            "source": f"/srv/bench/source-{n}",
            "destination": f"/srv/bench/destination-{n}",
            "schedule": "0 3 * * *",
            "catch_up": False,
        }
        for n in range(jobs)
    }
    config = env.config(
        env.root / "scale.yaml", job_configs, state_dir=state, base_topic=BASE, instance=INSTANCE
    )
    state_prefix = f"{BASE}/{INSTANCE}/jobs/"
    discovery_prefix = f"homeassistant/device/{INSTANCE}_job"
    seen_states: set[str] = set()
    seen_discovery: set[str] = set()
    times = {"first": 0.0, "last": 0.0}

    def on_message(msg: Received) -> None:
        if msg.topic.startswith(state_prefix):
            seen_states.add(msg.topic)
        elif msg.topic.startswith(discovery_prefix):
            seen_discovery.add(msg.topic)
        else:
            return
        times["first"] = times["first"] or msg.wall
        times["last"] = msg.wall

    watcher = Collector(
        env.broker_host,
        env.broker_port,
        [f"{BASE}/{INSTANCE}/jobs/+/state", "homeassistant/device/+/config"],
        on_message=on_message,
        keep=False,
    )
    log = (env.root / "serve.log").open("wb")
    started = time.time()
    proc = subprocess.Popen(
        [MQTT_BACKUP, "-c", str(config), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    result: dict[str, Any] = {"jobs": jobs}
    try:

        def all_published() -> bool:
            return len(seen_states) >= jobs and len(seen_discovery) >= jobs

        if not watcher.wait_until(all_published, timeout=120):
            raise RuntimeError(
                f"serve published {len(seen_discovery)} discoveries and {len(seen_states)} "
                f"states of {jobs} within 120 s"
            )
        published_at, first_at = times["last"], times["first"]
        watcher.close()
        result["publish_all_seconds"] = published_at - started
        result["first_message_seconds"] = first_at - started
        result["messages_at_startup"] = watcher.count

        fresh = Collector(env.broker_host, env.broker_port, [f"{BASE}/{INSTANCE}/jobs/+/state"])
        if not fresh.wait_until(lambda: fresh.count >= jobs, timeout=30):
            raise RuntimeError(f"a fresh subscriber got {fresh.count} of {jobs} retained states")
        result["fresh_subscriber_seconds"] = (
            max(m.at for m in fresh.messages) - fresh.connect_started
        )
        result["fresh_subscriber_retained"] = sum(1 for m in fresh.messages if m.retain)
        fresh.close()

        time.sleep(settle)
        cpu0, t0 = proc_cpu(proc.pid)[0], time.monotonic()
        time.sleep(idle_seconds)
        cpu1, t1 = proc_cpu(proc.pid)[0], time.monotonic()
        status = _proc_status(proc.pid)
        result["idle_window_seconds"] = t1 - t0
        result["idle_cpu_percent"] = (cpu1 - cpu0) / (t1 - t0) * 100
        result["rss_mb"] = _kib(status["VmRSS"])
        result["peak_rss_mb"] = _kib(status["VmHWM"])
        result["threads"] = int(status["Threads"])
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode} during the idle window")
        stop_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        result["stop_seconds"] = time.monotonic() - stop_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    result["goals"] = GOALS
    result["met"] = {
        "publish_all": result["publish_all_seconds"] <= GOALS["publish_all"],
        "fresh_subscriber": result["fresh_subscriber_seconds"] <= GOALS["fresh_subscriber"],
        "rss_mb": result["rss_mb"] <= GOALS["rss_mb"],
        "cpu_percent": result["idle_cpu_percent"] <= GOALS["cpu_percent"],
    }
    result["broker"] = (
        "max_queued_messages 100000, set_tcp_nodelay true (default 1000 drops states)"
    )
    return {"serve": result}
