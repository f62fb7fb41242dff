"""5. Deletion at scale: the engine's delete step vs bare ``rclone delete --files-from-raw``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_verify import files_left
from bench.harness import (
    RCLONE,
    Env,
    comparison,
    copy_tree,
    interleave,
    make_tree,
    rclone,
    run_timed,
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
    a moment before (and, by hand, ``rclone check`` just read it). Each side starts from
    that state, after the cache was dropped.
    """
    rclone("lsjson", "--recursive", "--files-only", "--no-mimetype", str(source))
    return source


def run(env: Env) -> dict[str, Any]:
    files, per_dir = (2000, 100) if env.quick else (100_000, 500)
    template = make_tree(env.fresh("tpl-del") / "src", files, 16, per_dir=per_dir, depth=2)
    paths = _listing(template)
    listing = env.root / "delete-list.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    rules = env.root / "delete-rules.txt"
    rules.write_text(exact_path_rules(paths), encoding="utf-8")
    runs = env.warmup + env.pairs
    sources: dict[str, Iterator[Path]] = {
        side: iter([copy_tree(template, env.fresh(f"del-{tag}") / "src") for _ in range(runs)])
        for side, tag in ((A, "a"), (B, "b"), (C, "c"))
    }
    left: dict[str, list[int]] = {A: [], B: [], C: []}
    wall: list[float] = []

    def engine_step() -> float:
        source = _listed(next(sources[A]))
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.delete_step",
                str(source),
                str(listing),
                str(env.fresh("run")),
            ],
            capture_output=True,
            check=False,
        )
        wall.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"delete step failed: {done.stdout!r} {done.stderr[-2000:]!r}")
        left[A].append(files_left(source))
        return float(json.loads(done.stdout)["seconds"])

    def bare() -> float:
        source = _listed(next(sources[B]))
        seconds = run_timed([RCLONE, "delete", "--files-from-raw", str(listing), "--", str(source)])
        left[B].append(files_left(source))
        return seconds

    def engine_argv() -> float:
        source = _listed(next(sources[C]))
        argv = delete_command(
            RcloneConfig(binary=RCLONE), str(source), rules, [], not_modified_after=datetime.now(UTC)
        )
        seconds = run_timed(argv)
        left[C].append(files_left(source))
        return seconds

    times = interleave(
        {A: engine_step, B: bare, C: engine_argv}, rounds=env.pairs, warmup=env.warmup, env=env
    )
    for side, counts in left.items():
        if any(counts):
            raise RuntimeError(f"{side}: files left after deleting: {counts}")
    desc = f"{files:,} files x 16 B, {per_dir} to a folder"
    main = comparison("delete step", A, times[A], B, times[B], GOAL)
    split = comparison("rclone part", C, times[C], B, times[B], None)
    main["data"] = split["data"] = desc
    main["method"] = (
        "each side starts as in a verify-then-delete run: cache dropped, then the source "
        "listed (untimed); engine side: deletion._delete() called directly in a fresh "
        "process and timed around the call (filter file, rclone delete, its final stats); "
        "bare side: the whole rclone process"
    )
    split["method"] = (
        "the engine's delete argv (exact-path filter file, --min-age) run bare, stderr discarded"
    )
    return {"delete_step": main, "rclone_argv": split}
