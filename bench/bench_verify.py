"""3. Verify-then-delete: a run-job against the same three rclone commands by hand, and move."""

from __future__ import annotations

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
    comparison,
    files_left,
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


def run(env: Env) -> dict[str, Any]:
    files, per_dir, desc = (
        (300, 50, "300 files x 4 KiB, nested")
        if env.quick
        else (20_000, 200, "20,000 files x 4 KiB, nested")
    )
    template = make_tree(env.fresh("tpl-vtd") / "src", files, 4096, per_dir=per_dir)
    # Every run deletes its source: each gets a fresh copy right before it (untimed, then
    # sync and the cache dropped), never one made long before and left to age.
    src = {tag: Slot(env, f"vtd-{tag}-src") for tag in "abc"}
    dst = {tag: Slot(env, f"vtd-{tag}-dst") for tag in "abc"}
    state = env.fresh("state")
    config = env.root / "verify.yaml"
    rc = RcloneConfig(binary=RCLONE)
    left: dict[str, list[int]] = {A: [], B: [], C: []}

    def write_config(rclone_binary: str) -> None:
        job = {
            "source": str(src["a"].path),
            "destination": str(dst["a"].path),
            "deletion": {"mode": "verify_then_delete", "verify": "checksum", "min_age": "0s"},
        }
        env.config(
            config, {"v": job}, state_dir=state, base_topic="bench_verify",
            rclone_binary=rclone_binary,
        )  # fmt: skip

    def prepare(tag: str) -> tuple[Path, Path]:
        return src[tag].fill(template), dst[tag].clear()

    def vtd(paths: tuple[Path, Path]) -> Sample:
        sample = run_timed([MQTT_BACKUP, "-c", str(config), "run-job", "v"])
        left[A].append(files_left(paths[0]))
        return sample

    def by_hand(paths: tuple[Path, Path]) -> Sample:
        source, dest = paths
        match = dest.parent / "match.txt"
        copy = transfer_command(rc, JobConfig(source=str(source), destination=str(dest)))
        check = [RCLONE, "check", "--one-way", "--match", str(match), "--", str(source), str(dest)]
        delete = [RCLONE, "delete", "--files-from-raw", str(match), "--", str(source)]
        steps = [run_timed(copy), run_timed(check), run_timed(delete)]
        left[B].append(files_left(source))
        return Sample(sum(s.seconds for s in steps), sum(s.cpu or 0.0 for s in steps))

    def move(paths: tuple[Path, Path]) -> Sample:
        source, dest = paths
        job = JobConfig(
            source=str(source),
            destination=str(dest),
            operation="move",
            extra_args=["--disable", "Move,DirMove"],
        )
        sample = run_timed(transfer_command(rc, job))
        left[C].append(files_left(source))
        return sample

    write_config(RCLONE)
    sides = [
        Side(A, vtd, lambda: prepare("a")),
        Side(B, by_hand, lambda: prepare("b")),
        Side(C, move, lambda: prepare("c")),
    ]
    times = interleave(sides, rounds=env.pairs, warmup=env.warmup, env=env)
    for side, counts in left.items():
        if any(counts):
            raise RuntimeError(f"{side}: source files left after the run: {counts}")
    # One more run, with rclone wrapped to log its calls: where the run-job's time goes.
    wrapper, log = step_wrapper(env, "verify")
    write_config(str(wrapper))
    steps = breakdown(
        env, [MQTT_BACKUP, "-c", str(config), "run-job", "v"], log, lambda: prepare("a")
    )
    main = comparison("vs by hand", A, times[A], B, times[B], GOAL)
    main["breakdown"] = steps
    context = comparison("vs move", A, times[A], C, times[C], None)
    main["data"] = context["data"] = desc
    env.cleanup([p for slot in [*src.values(), *dst.values()] for p in slot.cleanup()])
    return {"by_hand": main, "move": context}
