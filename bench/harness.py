"""What every benchmark shares: fresh folders, cache dropping, timing, interleaving, statistics."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VENV_BIN = Path(sys.executable).parent
RCLONE = shutil.which("rclone", path=str(VENV_BIN)) or shutil.which("rclone") or "rclone"
MQTT_BACKUP = shutil.which("mqtt-backup", path=str(VENV_BIN)) or "mqtt-backup"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass
class Env:
    """One benchmark session: its temporary root, broker, sizes and how runs are prepared."""

    root: Path
    broker_host: str
    broker_port: int
    quick: bool
    pairs: int
    warmup: int = 1
    cold: bool = True
    # Latency with every monitor kind pinging a local receiver (--monitors).
    monitors: bool = False
    notes: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, prefix: str) -> Path:
        """A new, never used folder: on this ext4, reusing freed space after mass deletes is slow."""
        path = self.root / f"{prefix}-{next(self._counter):04d}"
        path.mkdir(parents=True)
        return path

    def prepare_run(self) -> None:
        """Untimed, before every timed run: flush writes, and drop the page cache when cold."""
        os.sync()
        if self.cold and can_drop_caches():
            DROP_CACHES.write_text("3\n")

    def config(
        self,
        path: Path,
        jobs: dict[str, dict[str, Any]],
        *,
        state_dir: Path,
        base_topic: str,
        progress_interval: str = "1s",
        rclone_binary: str = RCLONE,
        instance: str = "bench",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write an mqtt-backup config with MQTT publishing on, to the bench broker."""
        data = {
            "instance": instance,
            "state_dir": str(state_dir),
            "max_concurrent_jobs": 2,
            "mqtt": {
                "host": self.broker_host,
                "port": self.broker_port,
                "base_topic": base_topic,
                "discovery": True,
                "progress_interval": progress_interval,
            },
            "rclone": {"binary": rclone_binary},
            "jobs": jobs,
        } | (extra or {})
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def run_timed(
    argv: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True
) -> float:
    """Wall time of one whole command, from process start to exit (seconds)."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if check and done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited {done.returncode}: {tail}"
        )
    return elapsed


def rclone(*args: str) -> None:
    """An untimed helper rclone call (quiet)."""
    subprocess.run([RCLONE, "--config", os.devnull, *args], check=True, capture_output=True)


def copy_tree(template: Path, dest: Path) -> Path:
    """An independent copy of ``template`` (same modtimes), as a fresh source for a run."""
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
    return dest


def make_tree(
    root: Path, files: int, size: int, *, per_dir: int = 1000, depth: int = 2, seed: int = 1
) -> Path:
    """``files`` files of ``size`` random bytes, ``per_dir`` to a folder, folders nested ``depth`` deep."""
    root.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    block = rnd.randbytes(max(size, 1) + 4096)
    folders = max(1, -(-files // per_dir))
    width = max(2, int(round(folders ** (1 / depth))) if depth > 1 else folders)
    old = time.time() - 7 * 86400  # a week old: never "too young" for a deletion
    for n in range(files):
        f = n // per_dir
        parts = []
        for _ in range(depth - 1):
            parts.append(f"d{f % width:03d}")
            f //= width
        parts.append(f"e{f:03d}")
        folder = root.joinpath(*parts)
        if n % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"file-{n:06d}.bin"
        offset = (n * 7919) % 4096
        chunk = block[offset : offset + size]
        # each file differs from every other: its number is written into it
        data = n.to_bytes(8, "little") + chunk[8:] if size >= 8 else chunk
        path.write_bytes(data)
        os.utime(path, (old, old))
    return root


def make_big_files(root: Path, count: int, size: int, seed: int = 2) -> Path:
    """``count`` files of ``size`` random bytes (written in 16 MiB blocks)."""
    root.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    block_size = 16 << 20
    old = time.time() - 7 * 86400
    for n in range(count):
        path = root / f"big-{n:02d}.bin"
        with path.open("wb") as out:
            left = size
            while left > 0:
                take = min(left, block_size)
                out.write(rnd.randbytes(take))
                left -= take
        os.utime(path, (old, old))
    return root


def interleave(
    sides: dict[str, Callable[[], float]],
    *,
    rounds: int,
    warmup: int,
    env: Env,
    setup: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Run the sides in turn (A B A B …): ``warmup`` rounds discarded, then ``rounds`` measured.

    Each side's callable does its own untimed preparation and returns the seconds it timed;
    ``env.prepare_run()`` (sync, drop caches) runs before each.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    for number in range(warmup + rounds):
        for name, side in sides.items():
            if setup is not None:
                setup(name)
            env.prepare_run()
            seconds = side()
            if number >= warmup:
                times[name].append(seconds)
    return times


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def median_interval(values: Sequence[float], coverage: float = 0.95) -> dict[str, float]:
    """A distribution-free confidence interval for the median of ``values``.

    The k-th smallest and k-th largest value bracket the true median unless at least
    n-k+1 of the n runs fall on one side of it, which is a binomial(n, 1/2) tail; k is
    the largest whose interval still covers ``coverage`` (9 runs: 2nd to 8th, 96 %).
    With too few runs for ``coverage``, min to max and the coverage they have.
    """
    ordered = sorted(values)
    n = len(ordered)
    k, covers = 1, 1 - 2 * 0.5**n
    for candidate in range(2, (n + 1) // 2 + 1):
        outside = 2 * sum(math.comb(n, i) for i in range(candidate)) / 2**n
        if 1 - outside < coverage:
            break
        k, covers = candidate, 1 - outside
    return {"low": ordered[k - 1], "high": ordered[n - k], "coverage": covers}


def ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-pair ratios a[i]/b[i] of interleaved runs: median, min, max, and the median's
    confidence interval."""
    pairs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return {**summary(pairs), "ci": median_interval(pairs)}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def comparison(
    label: str, a_name: str, a: list[float], b_name: str, b: list[float], goal: float | None
) -> dict[str, Any]:
    """One A-vs-B result: both sides' summaries, the per-pair ratio and the goal verdict."""
    r = ratio(a, b)
    return {
        "label": label,
        "a": a_name,
        "b": b_name,
        "a_seconds": summary(a),
        "b_seconds": summary(b),
        "a_runs": a,
        "b_runs": b,
        "ratio": r,
        "goal": goal,
        "met": None if goal is None else r["median"] <= goal,
        # Whether the runs tell: the goal lies outside the median's confidence interval.
        "clear": None if goal is None else not r["ci"]["low"] <= goal <= r["ci"]["high"],
    }


STEP_WRAPPER = """#!/bin/bash
# rclone, logging when each call starts and ends (bench: where a run's time goes)
start=$EPOCHREALTIME
{real} "$@"
rc=$?
printf '%s %s %s\\n' "$start" "$EPOCHREALTIME" "$1" >> {log}
exit $rc
"""


def step_wrapper(env: Env, name: str) -> tuple[Path, Path]:
    """A wrapped rclone that logs each call's start, end and subcommand; returns (binary, log)."""
    log = env.root / f"{name}-steps.log"
    wrapper = env.root / f"{name}-rclone"
    wrapper.write_text(STEP_WRAPPER.format(real=RCLONE, log=log), encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper, log


def breakdown(argv: Sequence[str], log: Path) -> dict[str, Any]:
    """Run ``argv`` once (untimed against anything) and say where its wall time went.

    Returns the whole time, each rclone call (offset from the start, duration), and the
    rest: Python start-up before the first call, the gaps between calls, and the wind-down.
    """
    log.unlink(missing_ok=True)
    start = time.time()
    subprocess.run(list(argv), check=True, stdin=subprocess.DEVNULL, capture_output=True)
    end = time.time()
    steps = []
    for line in log.read_text().splitlines():
        begin, finish, command = line.split()
        steps.append(
            {"rclone": command, "at": float(begin) - start, "seconds": float(finish) - float(begin)}
        )
    steps.sort(key=lambda s: s["at"])
    return summarize_steps(steps, end - start)


def summarize_steps(steps: list[dict[str, Any]], total: float) -> dict[str, Any]:
    """Split a run's wall time into start-up, rclone running, gaps and wind-down.

    Calls may overlap (the first listing of a verify-then-delete runs beside the copy):
    "in rclone" is the time at least one rclone ran, and a call that starts before the
    previous ones ended is marked ``beside``.
    """
    in_rclone = 0.0
    reach = None  # end of the calls so far
    for step in steps:
        begin, finish = step["at"], step["at"] + step["seconds"]
        step["beside"] = reach is not None and begin < reach
        if reach is None or begin >= reach:
            in_rclone += step["seconds"]
        elif finish > reach:
            in_rclone += finish - reach
        reach = finish if reach is None else max(reach, finish)
    first = steps[0]["at"] if steps else total
    last_end = reach if reach is not None else total
    return {
        "total": total,
        "steps": steps,
        "before_first_rclone": first,
        "after_last_rclone": total - last_end,
        "between_rclone_calls": last_end - first - in_rclone,
        "in_rclone": in_rclone,
    }
