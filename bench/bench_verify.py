"""2. Verify-then-delete: a run-job against the same three rclone commands by hand, and move."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    breakdown,
    comparison,
    copy_tree,
    interleave,
    make_tree,
    run_timed,
    step_wrapper,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command

GOAL = 1.10
A, B, C = (
    "verify_then_delete run-job",
    "copy + check + delete by hand",
    "move --disable Move,DirMove",
)


def files_left(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def run(env: Env) -> dict[str, Any]:
    files, per_dir, desc = (
        (300, 50, "300 files x 4 KiB, nested")
        if env.quick
        else (20_000, 200, "20,000 files x 4 KiB, nested")
    )
    template = make_tree(env.fresh("tpl-vtd") / "src", files, 4096, per_dir=per_dir)
    runs = env.warmup + env.pairs
    # Every run deletes its source: all sources are copied up front, before any deletion,
    # because creating many files right after deleting many is slow on this ext4.
    sources: dict[str, Iterator[Path]] = {
        side: iter([copy_tree(template, env.fresh(f"src-{tag}") / "src") for _ in range(runs)])
        for side, tag in ((A, "a"), (B, "b"), (C, "c"))
    }
    extra_source = copy_tree(template, env.fresh("src-x") / "src")
    state = env.fresh("state")
    config = env.root / "verify.yaml"
    left: dict[str, list[int]] = {A: [], B: [], C: []}
    rc = RcloneConfig(binary=RCLONE)

    def vtd() -> float:
        source, dest = next(sources[A]), env.fresh("dst-a")
        job = {
            "source": str(source),
            "destination": str(dest),
            "deletion": {"mode": "verify_then_delete", "verify": "checksum", "min_age": "0s"},
        }
        env.config(config, {"v": job}, state_dir=state, base_topic="bench_verify")
        seconds = run_timed([MQTT_BACKUP, "-c", str(config), "run-job", "v"])
        left[A].append(files_left(source))
        return seconds

    def by_hand() -> float:
        source, dest = next(sources[B]), env.fresh("dst-b")
        match = dest.parent / "match.txt"
        copy = transfer_command(rc, JobConfig(source=str(source), destination=str(dest)))
        check = [RCLONE, "check", "--one-way", "--match", str(match), "--", str(source), str(dest)]
        delete = [RCLONE, "delete", "--files-from-raw", str(match), "--", str(source)]
        seconds = run_timed(copy) + run_timed(check) + run_timed(delete)
        left[B].append(files_left(source))
        return seconds

    def move() -> float:
        source, dest = next(sources[C]), env.fresh("dst-c")
        job = JobConfig(
            source=str(source),
            destination=str(dest),
            operation="move",
            extra_args=["--disable", "Move,DirMove"],
        )
        seconds = run_timed(transfer_command(rc, job))
        left[C].append(files_left(source))
        return seconds

    times = interleave({A: vtd, B: by_hand, C: move}, rounds=env.pairs, warmup=env.warmup, env=env)
    for side, counts in left.items():
        if any(counts):
            raise RuntimeError(f"{side}: source files left after the run: {counts}")
    # One more run, with rclone wrapped to log its calls: where the run-job's time goes.
    wrapper, log = step_wrapper(env, "verify")
    source, dest = extra_source, env.fresh("dst-x")
    job = {
        "source": str(source),
        "destination": str(dest),
        "deletion": {"mode": "verify_then_delete", "verify": "checksum", "min_age": "0s"},
    }
    env.config(
        config, {"v": job}, state_dir=state, base_topic="bench_verify", rclone_binary=str(wrapper)
    )
    env.prepare_run()
    steps = breakdown([MQTT_BACKUP, "-c", str(config), "run-job", "v"], log)
    main = comparison("vs by hand", A, times[A], B, times[B], GOAL)
    main["breakdown"] = steps
    context = comparison("vs move", A, times[A], C, times[C], None)
    main["data"] = context["data"] = desc
    return {"by_hand": main, "move": context}
