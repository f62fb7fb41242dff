"""1. ``mqtt-backup run-job`` (publishing on) vs bare ``rclone copy``, same flags: its fixed cost
per run (cold and warm), and its cost per byte and per file once that is taken off."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    Sample,
    Side,
    Slot,
    breakdown,
    can_drop_caches,
    comparison,
    goal_check,
    interleave,
    make_big_files,
    make_tree,
    run_timed,
    step_wrapper,
    summary,
    with_interval,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command

# Over bare rclone's own fixed cost (an empty folder), and per byte once that is taken off.
GOALS = {"fixed_warm": 0.250, "fixed_cold": 0.300, "per_byte": 1.02}
A, B, FLOOR = "mqtt-backup run-job", "rclone copy", "imports only"


def sizes(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "big": {"desc": "8 files x 256 KiB", "count": 8, "size": 256 << 10},
            "small": {
                "desc": "300 files x 4 KiB, nested",
                "files": 300,
                "size": 4096,
                "per_dir": 50,
            },
        }
    return {
        "big": {"desc": "1 GiB as 8 files", "count": 8, "size": 128 << 20},
        "small": {
            "desc": "20,000 files x 4 KiB, nested",
            "files": 20_000,
            "size": 4096,
            "per_dir": 200,
        },
    }


def templates(env: Env) -> dict[str, Path]:
    """The two data sets, made once per session: 1 GiB in 8 files and 20,000 small files."""
    if "transfer" in env.shared:
        return dict(env.shared["transfer"])
    s = sizes(env.quick)
    env.shared["transfer"] = {
        "big": make_big_files(env.fresh("tpl-big"), s["big"]["count"], s["big"]["size"]),
        "small": make_tree(
            env.fresh("tpl-small") / "src",
            s["small"]["files"],
            s["small"]["size"],
            per_dir=s["small"]["per_dir"],
        ),
    }
    return dict(env.shared["transfer"])


# A Python process that imports the libraries run-job cannot do without, defines one
# pydantic model (pydantic loads its schema machinery on the first) and exits: the least
# any run-job built on them can cost.
IMPORTS_ONLY = "import paho.mqtt.client, pydantic, yaml\nclass M(pydantic.BaseModel):\n    x: int"


class Pair:
    """run-job and bare rclone copy of one data set, each into a slot of its own.

    The config file stays the same from run to run, as a user's does: its paths are slots
    that each run finds fresh. ``template`` None copies from ``source`` as it is (the data
    is only read); a template is copied to a fresh source before each run.
    """

    def __init__(self, env: Env, label: str, source: Path, *, fresh_source: bool) -> None:
        self.env = env
        self.label = label
        self.template = source if fresh_source else None
        # A few big files are removed after use; many small ones are set aside.
        big = not fresh_source
        self.slots = {
            side: {
                "src": Slot(env, f"{label}-{side}-src") if fresh_source else None,
                "dst": Slot(env, f"{label}-{side}-dst", remove=big),
            }
            for side in ("a", "b")
        }
        self.source = source
        self.state = env.fresh(f"state-{label}")
        self.config = env.root / f"transfer-{label}.yaml"
        self.write_config(RCLONE)

    def _paths(self, side: str) -> tuple[Path, Path]:
        src = self.slots[side]["src"]
        return (src.path if src is not None else self.source), self.slots[side]["dst"].path

    def write_config(self, rclone_binary: str) -> None:
        source, dest = self._paths("a")
        job = {"name": "bench transfer", "source": str(source), "destination": str(dest)}
        self.env.config(
            self.config,
            {"t": job},
            state_dir=self.state,
            base_topic=f"bench_{self.label}",
            rclone_binary=rclone_binary,
        )

    def prepare(self, side: str) -> None:
        src = self.slots[side]["src"]
        if src is not None and self.template is not None:
            src.fill(self.template)
        self.slots[side]["dst"].clear()

    def run_job(self, _prepared: object = None) -> Sample:
        return run_timed([MQTT_BACKUP, "-c", str(self.config), "run-job", "t"])

    def bare(self, _prepared: object = None) -> Sample:
        source, dest = self._paths("b")
        job = JobConfig(source=str(source), destination=str(dest))
        return run_timed(transfer_command(RcloneConfig(binary=RCLONE), job))

    def sides(self) -> list[Side]:
        return [
            Side(A, self.run_job, lambda: self.prepare("a")),
            Side(B, self.bare, lambda: self.prepare("b")),
        ]

    def folders(self) -> list[Path]:
        return [
            p for s in self.slots.values() for slot in s.values() if slot for p in slot.cleanup()
        ]


def fixed_cost(env: Env, empty: Path, *, cold: bool) -> dict[str, Any]:
    """run-job and rclone copy of an empty folder: start-up and wind-down only, interleaved
    with a Python process that only imports the libraries (the floor)."""
    pair = Pair(env, f"empty-{'cold' if cold else 'warm'}", empty, fresh_source=False)
    floor = Side(FLOOR, lambda _p: run_timed([sys.executable, "-c", IMPORTS_ONLY]))
    runs = interleave(
        [*pair.sides(), floor], rounds=env.pairs, warmup=env.warmup, env=env, cold=cold
    )
    result = comparison(f"empty, {'cold' if cold else 'warm'}", A, runs[A], B, runs[B], None)
    result["data"] = "an empty folder (start-up and wind-down only)"
    result["cache"] = "cold" if cold else "warm"
    goal = GOALS["fixed_cold" if cold else "fixed_warm"]
    result["fixed_cost"] = {
        **result["difference"],
        **goal_check(result["difference"]["median"], result["difference"]["ci"], goal),
    }
    result["imports_only"] = {
        "code": IMPORTS_ONLY,
        "seconds": summary([s.seconds for s in runs[FLOOR]]),
    }
    env.cleanup(pair.folders())
    return result


def _without_fixed(result: dict[str, Any], fixed: float) -> dict[str, Any]:
    """Per pair: (run-job - the fixed cost) / rclone: what run-job costs per byte or file."""
    ratios = [(a - fixed) / b for a, b in zip(result["a_runs"], result["b_runs"], strict=True)]
    return with_interval(ratios)


def run(env: Env) -> dict[str, Any]:
    tpl = templates(env)
    desc = sizes(env.quick)
    empty = env.fresh("tpl-empty")
    results: dict[str, Any] = {}
    cold_possible = env.cold and can_drop_caches()
    fixed = {"warm": fixed_cost(env, empty, cold=False)}
    if cold_possible:
        fixed["cold"] = fixed_cost(env, empty, cold=True)
    results["fixed"] = fixed
    # The fixed cost under the cache the data sets run with.
    session = fixed["cold" if cold_possible else "warm"]["fixed_cost"]["median"]
    wrapper, log = step_wrapper(env, "transfer")
    for key in ("big", "small"):
        pair = Pair(env, key, tpl[key], fresh_source=key == "small")
        runs = interleave(pair.sides(), rounds=env.pairs, warmup=env.warmup, env=env)
        result = comparison(key, A, runs[A], B, runs[B], None)
        result["data"] = desc[key]["desc"]
        result["without_fixed_cost"] = _without_fixed(result, session)
        result["fixed_cost_taken_off"] = session
        if key == "big":
            per_byte = result["without_fixed_cost"]
            result["without_fixed_cost"].update(
                goal_check(per_byte["median"], per_byte["ci"], GOALS["per_byte"])
            )
        # One more run with rclone wrapped to log its calls: where run-job's time goes.
        pair.write_config(str(wrapper))
        argv = [MQTT_BACKUP, "-c", str(pair.config), "run-job", "t"]
        result["breakdown"] = breakdown(env, argv, log, lambda p=pair: p.prepare("a"))
        results[key] = result
        env.cleanup(pair.folders())
    return results
