"""3. Verify-then-delete, inside ``serve`` and as a run-job, against the same three rclone
commands by hand, and against ``rclone move``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.bench_serve import Serve, cpu_rows
from bench.harness import (
    MQTT_BACKUP,
    RCLONE,
    Env,
    Sample,
    Side,
    Slot,
    breakdown,
    comparison,
    files_left,
    goal_check,
    interleave,
    make_tree,
    run_timed,
    step_wrapper,
    with_interval,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command

# Inside serve, against the hand-run chain; a run-job may add its start-up budget on top.
GOAL = 0.95
STARTUP_BUDGET = 0.300
SERVE, RUN_JOB, HAND, MOVE = (
    "verify_then_delete in serve (Run now)",
    "verify_then_delete run-job",
    "copy + check + delete by hand",
    "move --disable Move,DirMove",
)
TAGS = {SERVE: "s", RUN_JOB: "r", HAND: "h", MOVE: "m"}


def _job(source: Path, dest: Path) -> dict[str, Any]:
    return {
        "source": str(source),
        "destination": str(dest),
        "deletion": {"mode": "verify_then_delete", "verify": "checksum", "min_age": "0s"},
    }


def _less_startup(result: dict[str, Any]) -> dict[str, Any]:
    """Per pair (run-job - start-up budget) / by hand, against the serve goal."""
    values = [
        (a - STARTUP_BUDGET) / b for a, b in zip(result["a_runs"], result["b_runs"], strict=True)
    ]
    stats = with_interval(values)
    return {**stats, **goal_check(stats["median"], stats["ci"], GOAL)}


def run(env: Env) -> dict[str, Any]:
    files, per_dir, desc = (
        (300, 50, "300 files x 4 KiB, nested")
        if env.quick
        else (20_000, 200, "20,000 files x 4 KiB, nested")
    )
    template = make_tree(env.fresh("tpl-vtd") / "src", files, 4096, per_dir=per_dir)
    # Every run deletes its source: each gets a fresh copy right before it (untimed, then
    # sync and the cache dropped), never one made long before and left to age.
    src = {tag: Slot(env, f"vtd-{tag}-src") for tag in TAGS.values()}
    dst = {tag: Slot(env, f"vtd-{tag}-dst") for tag in TAGS.values()}
    state = env.fresh("state")
    config = env.root / "verify.yaml"
    rc = RcloneConfig(binary=RCLONE)
    left: dict[str, list[int]] = {side: [] for side in TAGS}

    def write_config(rclone_binary: str) -> None:
        env.config(
            config, {"v": _job(src["r"].path, dst["r"].path)}, state_dir=state,
            base_topic="bench_verify", rclone_binary=rclone_binary,
        )  # fmt: skip

    def prepare(side: str) -> tuple[Path, Path]:
        return src[TAGS[side]].fill(template), dst[TAGS[side]].clear()

    def counted(side: str, sample: Sample, source: Path) -> Sample:
        left[side].append(files_left(source))
        return sample

    def in_serve(paths: tuple[Path, Path]) -> Sample:
        return counted(SERVE, serve.run("v"), paths[0])

    def run_job(paths: tuple[Path, Path]) -> Sample:
        return counted(
            RUN_JOB, run_timed([MQTT_BACKUP, "-c", str(config), "run-job", "v"]), paths[0]
        )

    def by_hand(paths: tuple[Path, Path]) -> Sample:
        source, dest = paths
        match = dest.parent / "match.txt"
        copy = transfer_command(rc, JobConfig(source=str(source), destination=str(dest)))
        check = [RCLONE, "check", "--one-way", "--match", str(match), "--", str(source), str(dest)]
        delete = [RCLONE, "delete", "--files-from-raw", str(match), "--", str(source)]
        steps = [run_timed(copy), run_timed(check), run_timed(delete)]
        total = Sample(sum(s.seconds for s in steps), sum(s.cpu or 0.0 for s in steps))
        return counted(HAND, total, source)

    def move(paths: tuple[Path, Path]) -> Sample:
        source, dest = paths
        job = JobConfig(
            source=str(source),
            destination=str(dest),
            operation="move",
            extra_args=["--disable", "Move,DirMove"],
        )
        return counted(MOVE, run_timed(transfer_command(rc, job)), source)

    write_config(RCLONE)
    serve = Serve(env, {"v": _job(src["s"].path, dst["s"].path)}, name="serve-verify")
    try:
        sides = [
            Side(SERVE, in_serve, lambda: prepare(SERVE)),
            Side(RUN_JOB, run_job, lambda: prepare(RUN_JOB)),
            Side(HAND, by_hand, lambda: prepare(HAND)),
            Side(MOVE, move, lambda: prepare(MOVE)),
        ]
        times = interleave(sides, rounds=env.pairs, warmup=env.warmup, env=env)
    finally:
        serve.stop()
    for side, counts in left.items():
        if any(counts):
            raise RuntimeError(f"{side}: source files left after the run: {counts}")
    # One more run, with rclone wrapped to log its calls: where the run-job's time goes.
    wrapper, log = step_wrapper(env, "verify")
    write_config(str(wrapper))
    steps = breakdown(
        env, [MQTT_BACKUP, "-c", str(config), "run-job", "v"], log, lambda: prepare(RUN_JOB)
    )
    in_serve_result = comparison("serve vs by hand", SERVE, times[SERVE], HAND, times[HAND], GOAL)
    cpu_rows(in_serve_result)
    run_job_result = comparison(
        "run-job vs by hand", RUN_JOB, times[RUN_JOB], HAND, times[HAND], None
    )
    run_job_result["less_startup"] = _less_startup(run_job_result)
    run_job_result["startup_budget"] = STARTUP_BUDGET
    run_job_result["breakdown"] = steps
    against_move = comparison("serve vs move", SERVE, times[SERVE], MOVE, times[MOVE], None)
    against_move.pop("a_extra_runs", None)
    results = {"serve": in_serve_result, "by_hand": run_job_result, "move": against_move}
    for result in results.values():
        result["data"] = desc
    env.cleanup([p for slot in [*src.values(), *dst.values()] for p in slot.cleanup()])
    return results
