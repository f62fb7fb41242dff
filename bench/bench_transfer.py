"""1. Transfer overhead: ``mqtt-backup run-job`` (publishing on) vs bare ``rclone copy``, same flags."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    breakdown,
    comparison,
    interleave,
    make_big_files,
    make_tree,
    run_timed,
    step_wrapper,
    summary,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command

GOALS = {"big": 1.03, "small": 1.05}


def _sizes(quick: bool) -> dict[str, dict[str, Any]]:
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


def _job(source: Path, destination: Path) -> dict[str, Any]:
    return {"name": "bench transfer", "source": str(source), "destination": str(destination)}


# A Python process that imports the libraries run-job cannot do without, defines one
# pydantic model (pydantic loads its schema machinery on the first) and exits: the least
# any run-job built on them can cost.
IMPORTS_ONLY = "import paho.mqtt.client, pydantic, yaml\nclass M(pydantic.BaseModel):\n    x: int"


def _compare(
    env: Env, label: str, source: Path, goal: float | None, *, floor: bool = False
) -> dict[str, Any]:
    """Interleave run-job and bare rclone copy of ``source``, each into a new folder.

    With ``floor``, a third side times a Python process that only imports the libraries.
    """
    state = env.fresh("state")
    config = env.root / f"transfer-{label}.yaml"

    def with_mqtt_backup() -> float:
        dest = env.fresh(f"dst-{label}-a")
        env.config(config, {"t": _job(source, dest)}, state_dir=state, base_topic=f"bench_{label}")
        return run_timed([MQTT_BACKUP, "-c", str(config), "run-job", "t"])

    def bare() -> float:
        dest = env.fresh(f"dst-{label}-b")
        job = JobConfig(source=str(source), destination=str(dest))
        argv = transfer_command(RcloneConfig(binary=RCLONE), job)
        return run_timed(argv)

    sides = {"mqtt-backup run-job": with_mqtt_backup, "rclone copy": bare}
    if floor:
        sides["imports only"] = lambda: run_timed([sys.executable, "-c", IMPORTS_ONLY])
    times = interleave(sides, rounds=env.pairs, warmup=env.warmup, env=env)
    result = comparison(
        label,
        "mqtt-backup run-job",
        times["mqtt-backup run-job"],
        "rclone copy",
        times["rclone copy"],
        goal,
    )
    if floor:
        result["imports_only"] = {"code": IMPORTS_ONLY, "seconds": summary(times["imports only"])}
    return result


def run(env: Env) -> dict[str, Any]:
    sizes = _sizes(env.quick)
    big = make_big_files(env.fresh("tpl-big"), sizes["big"]["count"], sizes["big"]["size"])
    small = make_tree(
        env.fresh("tpl-small") / "src",
        sizes["small"]["files"],
        sizes["small"]["size"],
        per_dir=sizes["small"]["per_dir"],
    )
    empty = env.fresh("tpl-empty")
    wrapper, log = step_wrapper(env, "transfer")
    results: dict[str, Any] = {}
    results["big"] = _compare(env, "big", big, GOALS["big"])
    results["big"]["data"] = sizes["big"]["desc"]
    results["small"] = _compare(env, "small", small, GOALS["small"])
    results["small"]["data"] = sizes["small"]["desc"]
    for key, source in (("big", big), ("small", small)):
        # One more run with rclone wrapped to log its calls: where run-job's time goes.
        config = env.config(
            env.root / "transfer-steps.yaml",
            {"t": _job(source, env.fresh(f"dst-{key}-x"))},
            state_dir=env.fresh("state"),
            base_topic="bench_steps",
            rclone_binary=str(wrapper),
        )
        env.prepare_run()
        results[key]["breakdown"] = breakdown([MQTT_BACKUP, "-c", str(config), "run-job", "t"], log)
    # The fixed cost of a run: an empty folder, so only start-up and wind-down are timed.
    fixed = _compare(env, "empty", empty, None, floor=True)
    fixed["data"] = "an empty folder (start-up and wind-down only)"
    results["startup"] = fixed
    extra = fixed["a_seconds"]["median"] - fixed["b_seconds"]["median"]
    results["startup"]["fixed_overhead_seconds"] = extra
    for key in ("big", "small"):
        r = results[key]
        a = [x - extra for x in r["a_runs"]]
        r["ratio_without_startup"] = summary([x / y for x, y in zip(a, r["b_runs"], strict=True)])
        r["startup_share_of_overhead"] = (
            extra / (r["a_seconds"]["median"] - r["b_seconds"]["median"])
            if r["a_seconds"]["median"] > r["b_seconds"]["median"]
            else None
        )
    return results
