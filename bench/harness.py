"""What every benchmark shares: fresh folders, cache dropping, timing, interleaving, statistics."""

from __future__ import annotations

import itertools
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VENV_BIN = Path(sys.executable).parent
RCLONE = shutil.which("rclone", path=str(VENV_BIN)) or shutil.which("rclone") or "rclone"
MQTT_BACKUP = shutil.which("mqtt-backup", path=str(VENV_BIN)) or "mqtt-backup"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
CLOCK_TICK = 1 / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One timed run: wall seconds, and the CPU seconds (user + system) it cost, when known.

    ``extra`` holds further per-run numbers (a serve's own and its rclone's CPU, ...).
    """

    seconds: float
    cpu: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Side:
    """One side of a comparison: ``prepare`` (untimed, before the caches are dropped) makes
    what the run needs, such as a fresh copy of its source; ``measure`` times the run."""

    name: str
    measure: Callable[[Any], Sample]
    prepare: Callable[[], Any] = lambda: None


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
    # Data sets that several benchmarks use, made once per session (by name).
    shared: dict[str, Any] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, prefix: str) -> Path:
        """A new, never used folder: on this ext4, reusing freed space after mass deletes is slow."""
        path = self.root / f"{prefix}-{next(self._counter):04d}"
        path.mkdir(parents=True)
        return path

    def prepare_run(self, cold: bool | None = None) -> None:
        """Untimed, before every timed run: flush writes, and drop the page cache when cold."""
        os.sync()
        if (self.cold if cold is None else cold) and can_drop_caches():
            DROP_CACHES.write_text("3\n")

    def cleanup(self, paths: Iterable[Path]) -> None:
        """Remove a finished group's folders, between groups and never between runs.

        Creating many files right after deleting many is slow on this ext4 (the freed space
        is reused slowly until written back): sync and, when allowed, drop the caches after.
        """
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        os.sync()
        if can_drop_caches():
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


class Slot:
    """A fixed path (the one a config names) that each run finds absent or freshly made.

    What a run left there is renamed aside, never deleted between runs: creating many
    files right after deleting many is slow on this ext4. ``remove`` deletes it instead,
    for a few big files that would fill the disk and cost nothing to delete.
    """

    def __init__(self, env: Env, name: str, *, remove: bool = False) -> None:
        self.env = env
        self.path = env.root / "slots" / name
        self.path.parent.mkdir(exist_ok=True)
        self.remove = remove
        self.aside: list[Path] = []

    def clear(self) -> Path:
        if self.path.exists():
            if self.remove:
                shutil.rmtree(self.path)
            else:
                aside = self.env.fresh("aside") / self.path.name
                self.path.rename(aside)
                self.aside.append(aside.parent)
        return self.path

    def fill(self, template: Path) -> Path:
        """A fresh copy of ``template`` at the slot's path."""
        return copy_tree(template, self.clear())

    def cleanup(self) -> list[Path]:
        """Every folder this slot used: for Env.cleanup at the end of the group."""
        return [*self.aside, self.path]


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def children_cpu() -> float:
    """CPU seconds of every child of this process that has been waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of a running process, from /proc/PID/stat.

    In clock ticks (10 ms): a single run's figure is coarse, a mean over many runs is not.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the ")": state is field 3, so utime (14), stime (15), cutime (16), cstime (17)
    # sit at 11 to 14
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own * CLOCK_TICK, children * CLOCK_TICK


def run_timed(
    argv: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True
) -> Sample:
    """Wall time of one whole command, from process start to exit, and the CPU it (and the
    children it waited for) used."""
    cpu_before = children_cpu()
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
    cpu = children_cpu() - cpu_before
    if check and done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited {done.returncode}: {tail}"
        )
    return Sample(elapsed, cpu)


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
    rnd = random.Random(seed)
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
    rnd = random.Random(seed)
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


def files_left(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def interleave(
    sides: Sequence[Side],
    *,
    rounds: int,
    warmup: int,
    env: Env,
    cold: bool | None = None,
) -> dict[str, list[Sample]]:
    """Run the sides in turn, ``warmup`` rounds discarded, then ``rounds`` measured.

    The order turns each round (A B C, B C A, C A B, ...), so no side always runs first
    after a preparation or right after another side. Before each run: its ``prepare``,
    then ``env.prepare_run()`` (sync; drop caches when ``cold``, default: the session's).
    """
    samples: dict[str, list[Sample]] = {side.name: [] for side in sides}
    for number in range(warmup + rounds):
        shift = number % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            prepared = side.prepare()
            env.prepare_run(cold)
            sample = side.measure(prepared)
            if number >= warmup:
                samples[side.name].append(sample)
    return samples


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
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


def with_interval(values: Sequence[float]) -> dict[str, Any]:
    """summary() and the median's confidence interval."""
    return {**summary(values), "ci": median_interval(values)}


def ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-pair ratios a[i]/b[i] of interleaved runs: median, min, max, and the median's
    confidence interval."""
    return with_interval([x / y for x, y in zip(a, b, strict=True) if y > 0])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _seconds(runs: Sequence[Sample | float]) -> list[float]:
    return [r.seconds if isinstance(r, Sample) else float(r) for r in runs]


def _cpu(runs: Sequence[Sample | float]) -> list[float] | None:
    cpu = [r.cpu for r in runs if isinstance(r, Sample) and r.cpu is not None]
    return cpu if cpu and len(cpu) == len(runs) else None


def comparison(
    label: str,
    a_name: str,
    a_runs: Sequence[Sample | float],
    b_name: str,
    b_runs: Sequence[Sample | float],
    goal: float | None,
) -> dict[str, Any]:
    """One A-vs-B result: both sides' summaries, the per-pair ratio and difference (a - b,
    seconds), the CPU of both sides when measured, and the goal verdict on the ratio."""
    a, b = _seconds(a_runs), _seconds(b_runs)
    r = ratio(a, b)
    result: dict[str, Any] = {
        "label": label,
        "a": a_name,
        "b": b_name,
        "a_seconds": summary(a),
        "b_seconds": summary(b),
        "a_runs": a,
        "b_runs": b,
        "ratio": r,
        "difference": with_interval([x - y for x, y in zip(a, b, strict=True)]),
        "goal": goal,
        "met": None if goal is None else r["median"] <= goal,
        # Whether the runs tell: the goal lies outside the median's confidence interval.
        "clear": None if goal is None else not r["ci"]["low"] <= goal <= r["ci"]["high"],
    }
    a_cpu, b_cpu = _cpu(a_runs), _cpu(b_runs)
    if a_cpu is not None and b_cpu is not None:
        result["a_cpu"], result["b_cpu"] = summary(a_cpu), summary(b_cpu)
        result["a_cpu_runs"], result["b_cpu_runs"] = a_cpu, b_cpu
        result["cpu_difference"] = with_interval([x - y for x, y in zip(a_cpu, b_cpu, strict=True)])
    extras = [r.extra for r in a_runs if isinstance(r, Sample) and r.extra]
    if extras:
        result["a_extra_runs"] = extras
    return result


def goal_check(value: float, interval: dict[str, float], goal: float) -> dict[str, Any]:
    """A verdict on a median ``value`` against an upper ``goal``, with its interval."""
    return {
        "goal": goal,
        "met": value <= goal,
        "clear": not interval["low"] <= goal <= interval["high"],
    }


STEP_WRAPPER = """#!/bin/bash
# rclone, logging when each call starts and ends and the CPU it used (bench: where a run's
# time goes); a file per call, as calls may run at the same time
start=$EPOCHREALTIME
{real} "$@"
rc=$?
end=$EPOCHREALTIME
log={log}.$$
printf '%s %s %s\\n' "$start" "$end" "$1" > "$log"
times >> "$log"
exit $rc
"""


def step_wrapper(env: Env, name: str) -> tuple[Path, Path]:
    """A wrapped rclone that logs each call's start, end, subcommand and CPU; returns
    (binary, log prefix)."""
    log = env.root / f"{name}-steps" / "call"
    log.parent.mkdir(exist_ok=True)
    wrapper = env.root / f"{name}-rclone"
    wrapper.write_text(STEP_WRAPPER.format(real=RCLONE, log=log), encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper, log


def _bash_seconds(text: str) -> float:
    """``1m2.345s`` (bash ``times``) in seconds."""
    minutes, _, seconds = text.rstrip("s").partition("m")
    return float(minutes) * 60 + float(seconds)


def clear_steps(log: Path) -> None:
    for old in log.parent.glob(f"{log.name}.*"):
        old.unlink()


def read_steps(log: Path, start: float) -> list[dict[str, Any]]:
    """The calls a step wrapper logged, as offsets from ``start`` (time.time()).

    Each call's file holds its start, end and subcommand, then bash's ``times``: the
    shell's CPU, then its children's (rclone's) user and system CPU.
    """
    steps = []
    for path in log.parent.glob(f"{log.name}.*"):
        lines = path.read_text().splitlines()
        begin, finish, command = lines[0].split()
        user, system = lines[2].split()
        steps.append(
            {
                "rclone": command,
                "at": float(begin) - start,
                "seconds": float(finish) - float(begin),
                "cpu": _bash_seconds(user) + _bash_seconds(system),
            }
        )
    steps.sort(key=lambda s: s["at"])
    return steps


def breakdown(
    env: Env, argv: Sequence[str], log: Path, prepare: Callable[[], object]
) -> dict[str, Any]:
    """Run ``argv`` twice (untimed against anything) and say where the second run's wall
    time went; the first fills what a run keeps between runs (the config cache, rclone's
    version for the wrapper). ``prepare`` makes a run's folders before each.

    Returns the whole time, each rclone call (offset from the start, duration, CPU), and the
    rest: Python start-up before the first call, the gaps between calls, and the wind-down.
    """
    for _ in range(2):
        prepare()
        env.prepare_run()
        clear_steps(log)
        cpu_before = children_cpu()
        start = time.time()
        subprocess.run(list(argv), check=True, stdin=subprocess.DEVNULL, capture_output=True)
        end = time.time()
        cpu = children_cpu() - cpu_before
    steps = read_steps(log, start)
    result = summarize_steps(steps, end - start)
    # bash and its `times` are part of the wrapper, not of rclone: a few ms per call.
    result["cpu"] = cpu
    result["rclone_cpu"] = sum(s["cpu"] for s in steps)
    return result


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
