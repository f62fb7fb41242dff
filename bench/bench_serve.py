"""2. A run started inside ``serve`` (Run now over MQTT) against bare ``rclone copy``.

Timed from the moment the bench publishes the job's ``run`` command to the moment its
subscriber receives the run's retained terminal state: what a Home Assistant user waits
for. Against the whole bare rclone process with the same argv. ``serve`` runs all along;
before and after each run its CPU is read from /proc/PID/stat: its own (utime + stime, the
Python side) and its waited-for children's (cutime + cstime: the run's rclone).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_transfer import sizes, templates
from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    Sample,
    Side,
    Slot,
    can_drop_caches,
    comparison,
    goal_check,
    interleave,
    proc_cpu,
    run_timed,
    summary,
    with_interval,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command
from tests.support.mqtt import Collector, Received

GOALS = {"fixed": 0.025, "big": 1.02, "small": 1.03, "serve_cpu": 0.050}
A, B = "serve, Run now over MQTT", "rclone copy"
BASE = "bench_serve"
TERMINAL = {"completed", "failed", "cancelled", "interrupted"}
# After the terminal state, serve still writes its history and frees the run's thread:
# its CPU is read this long after, so that all of a run's work is counted to it.
SETTLE = 0.3
RUN_TIMEOUT = 600.0


class Serve:
    """One ``mqtt-backup serve`` with the given jobs, and a subscriber to their states."""

    def __init__(self, env: Env, jobs: dict[str, dict[str, Any]], name: str = "serve") -> None:
        self.env = env
        state = env.fresh(f"state-{name}")
        # An instance of its own: another serve's retained states are not this one's.
        self.instance = name
        config = env.config(
            env.root / f"{name}.yaml", jobs, state_dir=state, base_topic=BASE, instance=name
        )
        self._terminal: dict[str, list[tuple[Received, dict[str, Any]]]] = {j: [] for j in jobs}
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.subscriber = Collector(
            env.broker_host,
            env.broker_port,
            [f"{BASE}/{name}/jobs/+/state"],
            on_message=self._on_state,
            keep=False,
        )
        self.log = env.root / f"{name}.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MQTT_BACKUP, "-c", str(config), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # serve subscribes to commands once connected: wait for its first states.
        if not self.subscriber.wait_until(lambda: self._ready(jobs), timeout=60):
            self.stop()
            raise RuntimeError(f"serve did not publish its job states within 60 s; see {self.log}")

    def _ready(self, jobs: dict[str, Any]) -> bool:
        return self.subscriber.count >= len(jobs)

    def _on_state(self, msg: Received) -> None:
        payload = msg.json()
        run_id = payload.get("run_id")
        if payload.get("status") not in TERMINAL or run_id is None:
            return
        with self._lock:
            if run_id in self._seen:
                return
            self._seen.add(run_id)
            self._terminal[payload["job_id"]].append((msg, payload))

    def run(self, job: str) -> Sample:
        """Publish ``run`` for ``job``; time until its run's terminal state arrives."""
        before = len(self._terminal[job])
        pid = self.process.pid
        own, children = proc_cpu(pid)
        start = time.monotonic()
        self.subscriber.publish(f"{BASE}/{self.instance}/jobs/{job}/run", b"PRESS")
        if not self.subscriber.wait_until(
            lambda: len(self._terminal[job]) > before, timeout=RUN_TIMEOUT
        ):
            raise RuntimeError(f"no terminal state of {job} within {RUN_TIMEOUT:.0f} s")
        msg, payload = self._terminal[job][before]
        seconds = msg.at - start
        time.sleep(SETTLE)
        own_after, children_after = proc_cpu(pid)
        if payload["status"] != "completed" or payload.get("errors"):
            raise RuntimeError(f"the {job} run ended {payload['status']}: {payload.get('error')}")
        return Sample(
            seconds,
            own_after - own,
            {
                "rclone_cpu": children_after - children,
                "files": payload.get("files_transferred"),
                "bytes": payload.get("bytes_transferred"),
                "duration_seconds": payload.get("duration_seconds"),
            },
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.subscriber.close()


def _bare(source: Path, dest: Path) -> Sample:
    job = JobConfig(source=str(source), destination=str(dest))
    return run_timed(transfer_command(RcloneConfig(binary=RCLONE), job))


def cpu_rows(result: dict[str, Any]) -> None:
    """serve's own CPU per run, and its rclone's against bare rclone's, into ``result``."""
    extras = result.pop("a_extra_runs")
    own = result.pop("a_cpu_runs")
    bare = result.pop("b_cpu_runs")
    rclone_in_serve = [e["rclone_cpu"] for e in extras]
    result["serve_cpu"] = {
        **summary(own),
        "runs": own,
        **goal_check(summary(own)["median"], with_interval(own)["ci"], GOALS["serve_cpu"]),
    }
    result["rclone_cpu"] = {
        "in_serve": summary(rclone_in_serve),
        "bare": summary(bare),
        "ratio": with_interval([x / y for x, y in zip(rclone_in_serve, bare, strict=True) if y]),
        "in_serve_runs": rclone_in_serve,
        "bare_runs": bare,
    }
    result["serve_runs"] = extras
    for key in ("a_cpu", "b_cpu", "cpu_difference"):
        result.pop(key, None)
    # Runs far above their side's median, with what serve said about them.
    median = result["a_seconds"]["median"]
    result["slow_runs"] = [
        {"seconds": s, **e}
        for s, e in zip(result["a_runs"], extras, strict=True)
        if median and s > 1.3 * median
    ]


def run(env: Env) -> dict[str, Any]:
    tpl = templates(env)
    desc = sizes(env.quick)
    empty = env.fresh("tpl-empty-serve")
    sources = {"big": tpl["big"], "small": Slot(env, "serve-small-a-src"), "empty": empty}
    bare_sources = {"big": tpl["big"], "small": Slot(env, "serve-small-b-src"), "empty": empty}
    dests = {
        side: {key: Slot(env, f"serve-{key}-{side}-dst", remove=key != "small") for key in sources}
        for side in ("a", "b")
    }
    jobs = {
        key: {
            "name": f"bench {key}",
            "source": str(src.path if isinstance(src, Slot) else src),
            "destination": str(dests["a"][key].path),
        }
        for key, src in sources.items()
    }
    serve = Serve(env, jobs)
    results: dict[str, Any] = {}
    try:

        def prepare(side: str, key: str) -> None:
            src = (sources if side == "a" else bare_sources)[key]
            if isinstance(src, Slot):
                src.fill(tpl[key])
            dests[side][key].clear()

        def bare(key: str) -> Sample:
            src = bare_sources[key]
            return _bare(src.path if isinstance(src, Slot) else src, dests["b"][key].path)

        def compare(key: str, label: str, goal: float | None, cold: bool | None) -> dict[str, Any]:
            sides = [
                Side(A, lambda _p: serve.run(key), lambda: prepare("a", key)),
                Side(B, lambda _p: bare(key), lambda: prepare("b", key)),
            ]
            runs = interleave(sides, rounds=env.pairs, warmup=env.warmup, env=env, cold=cold)
            result = comparison(label, A, runs[A], B, runs[B], goal)
            cpu_rows(result)
            return result

        cold_possible = env.cold and can_drop_caches()
        fixed: dict[str, Any] = {}
        for mode in ("warm", "cold") if cold_possible else ("warm",):
            result = compare("empty", f"empty, {mode}", None, cold=mode == "cold")
            result["data"] = "an empty folder (from the command to the terminal state)"
            result["cache"] = mode
            result["fixed_cost"] = {
                **result["difference"],
                **goal_check(
                    result["difference"]["median"], result["difference"]["ci"], GOALS["fixed"]
                ),
            }
            fixed[mode] = result
        results["fixed"] = fixed
        for key in ("big", "small"):
            result = compare(key, key, GOALS[key], cold=None)
            result["data"] = desc[key]["desc"]
            results[key] = result
    finally:
        serve.stop()
    folders = [
        p
        for slot in [*sources.values(), *bare_sources.values()]
        if isinstance(slot, Slot)
        for p in slot.cleanup()
    ]
    folders += [p for side in dests.values() for slot in side.values() for p in slot.cleanup()]
    env.cleanup(folders)
    results["method"] = (
        "serve side: from publishing the job's run command (QoS 1) to the subscriber's receipt "
        "of the run's retained terminal state; bare side: the whole rclone process, same argv; "
        "serve's CPU from /proc/PID/stat before the command and "
        f"{SETTLE:.1f} s after the terminal state (clock ticks of 10 ms: the mean over the "
        "runs is the precise figure)"
    )
    return results
