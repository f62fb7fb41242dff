"""6. Deletion at scale: the engine's delete step vs bare ``rclone delete --files-from-raw``.

The engine's side is a whole ``verify_then_delete`` run-job, with rclone wrapped to log
when each call starts and ends, onto a destination that already holds every file (so the
copy transfers nothing). Its delete step is timed from the end of the last rclone call
before the ``delete`` to the end of the ``delete``: the plan, the filter file, and rclone
deleting. Only the command line is used, so the benchmark measures whatever engine is
installed, however it verifies.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    Sample,
    Side,
    Slot,
    clear_steps,
    comparison,
    files_left,
    interleave,
    make_tree,
    rclone,
    read_steps,
    run_timed,
    step_wrapper,
)
from mqtt_backup.config.models import RcloneConfig
from mqtt_backup.engine.commands import delete_command
from mqtt_backup.engine.verify import exact_path_rules

GOAL = 1.10
A = "engine delete step"
B = "rclone delete --files-from-raw"
C = "engine's rclone argv alone"


def _listing(root: Path) -> list[str]:
    paths = []
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for name in files:
            paths.append(name if rel == "." else f"{rel}/{name}")
    return sorted(paths)


def _listed(source: Path) -> Path:
    """Untimed: list ``source`` as the check's second listing does right before the delete.

    In a verify-then-delete run the delete step never starts cold: the source was listed
    a moment before (and, by hand, ``rclone check`` just read it). The bare sides start
    from that state, after the cache was dropped.
    """
    rclone("lsjson", "--recursive", "--files-only", "--no-mimetype", str(source))
    return source


def delete_step(steps: list[dict[str, Any]]) -> float:
    """From the end of the last rclone call before ``delete`` to the end of the ``delete``."""
    deletes = [s for s in steps if s["rclone"] == "delete"]
    if len(deletes) != 1:
        raise RuntimeError(f"expected one rclone delete in the run, got {len(deletes)}: {steps}")
    delete = deletes[0]
    before = [s["at"] + s["seconds"] for s in steps if s["at"] + s["seconds"] <= delete["at"]]
    if not before:
        raise RuntimeError("no rclone call ended before the delete started")
    return float(delete["at"] + delete["seconds"] - max(before))


def run(env: Env) -> dict[str, Any]:
    files, per_dir = (1000, 100) if env.quick else (100_000, 500)
    template = make_tree(env.fresh("tpl-del") / "src", files, 16, per_dir=per_dir, depth=2)
    paths = _listing(template)
    listing = env.root / "delete-list.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    rules = env.root / "delete-rules.txt"
    rules.write_text(exact_path_rules(paths), encoding="utf-8")
    src = {tag: Slot(env, f"del-{tag}-src") for tag in "abc"}
    dst = Slot(env, "del-a-dst")
    wrapper, log = step_wrapper(env, "deletion")
    config = env.config(
        env.root / "deletion.yaml",
        {
            "d": {
                "source": str(src["a"].path),
                "destination": str(dst.path),
                "deletion": {"mode": "verify_then_delete", "verify": "checksum", "min_age": "0s"},
            }
        },
        state_dir=env.fresh("state"),
        base_topic="bench_deletion",
        rclone_binary=str(wrapper),
    )
    left: dict[str, list[int]] = {A: [], B: [], C: []}

    def prepare_engine() -> Path:
        dst.fill(template)  # the copy finds every file there and transfers nothing
        return src["a"].fill(template)

    def engine_step(source: Path) -> Sample:
        clear_steps(log)
        begin = time.time()
        whole = run_timed([MQTT_BACKUP, "-c", str(config), "run-job", "d"])
        steps = read_steps(log, begin)
        left[A].append(files_left(source))
        delete = next(s for s in steps if s["rclone"] == "delete")
        return Sample(
            delete_step(steps),
            None,
            {"run_seconds": whole.seconds, "rclone_delete_seconds": delete["seconds"]},
        )

    def bare(source: Path) -> Sample:
        sample = run_timed([RCLONE, "delete", "--files-from-raw", str(listing), "--", str(source)])
        left[B].append(files_left(source))
        return sample

    def engine_argv(source: Path) -> Sample:
        argv = delete_command(
            RcloneConfig(binary=RCLONE),
            str(source),
            rules,
            [],
            not_modified_after=datetime.now(UTC),
        )
        sample = run_timed(argv)
        left[C].append(files_left(source))
        return sample

    sides = [
        Side(A, engine_step, prepare_engine),
        Side(B, bare, lambda: _listed(src["b"].fill(template))),
        Side(C, engine_argv, lambda: _listed(src["c"].fill(template))),
    ]
    times = interleave(sides, rounds=env.pairs, warmup=env.warmup, env=env)
    for side, counts in left.items():
        if any(counts):
            raise RuntimeError(f"{side}: files left after deleting: {counts}")
    desc = f"{files:,} files x 16 B, {per_dir} to a folder"
    main = comparison("delete step", A, times[A], B, times[B], GOAL)
    main["engine_runs"] = main.pop("a_extra_runs", [])
    split = comparison("rclone part", C, times[C], B, times[B], None)
    main["data"] = split["data"] = desc
    main["method"] = (
        "engine side: a verify_then_delete run-job onto a destination that holds every file, "
        "rclone wrapped to log each call; the delete step runs from the end of the last call "
        "before rclone delete to the end of the delete (plan, filter file, rclone); bare "
        "sides: cache dropped, the source listed (untimed) as the check just did, then the "
        "whole rclone process"
    )
    split["method"] = (
        "the engine's delete argv (exact-path filter file, --min-age) run bare, stderr discarded"
    )
    env.cleanup([p for slot in [*src.values(), dst] for p in slot.cleanup()])
    return {"delete_step": main, "rclone_argv": split}
