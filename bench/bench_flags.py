"""7. ``--transfers`` / ``--checkers`` for the transfer: local and network destinations.

Bare ``rclone copy`` with the engine's argv and each setting in turn, on the transfer
benchmark's two data sets; the network destination is ``rclone serve sftp`` on 127.0.0.1.
The settings that mqtt-backup adds by default (engine/commands.py) come from these numbers.
Each variant's time and CPU are set against rclone's own default (4 transfers, 8 checkers).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

from bench.bench_transfer import sizes, templates
from bench.harness import (
    RCLONE,
    Env,
    Sample,
    Side,
    Slot,
    comparison,
    interleave,
    make_tree,
    run_timed,
)
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine.commands import transfer_command
from tests.integration.rclone_servers import SftpServer

# (transfers, checkers); the first is rclone's default, the base of every ratio.
VARIANTS = [(4, 8), (8, 8), (8, 16), (16, 16), (32, 32)]
NETWORK_VARIANTS = [(4, 8), (8, 16), (16, 16)]


def _name(variant: tuple[int, int]) -> str:
    return f"--transfers {variant[0]} --checkers {variant[1]}"


def _copy(source: Path, dest: str, variant: tuple[int, int]) -> Sample:
    job = JobConfig(
        source=str(source),
        destination=dest,
        extra_args=["--transfers", str(variant[0]), "--checkers", str(variant[1])],
    )
    return run_timed(transfer_command(RcloneConfig(binary=RCLONE), job, environ={}))


def _group(
    env: Env,
    key: str,
    label: str,
    template: Path,
    variants: list[tuple[int, int]],
    *,
    fresh_source: bool,
    remote: SftpServer | None,
    rounds: int,
) -> dict[str, Any]:
    """Every variant in turn, each copying into a fresh destination (and from a fresh
    source, for many small files)."""
    names = {v: f"flags-{key}-{v[0]}-{v[1]}" for v in variants}
    src = {v: Slot(env, f"{names[v]}-src") for v in variants}
    dst = {v: Slot(env, f"{names[v]}-dst", remove=not fresh_source) for v in variants}
    runs_so_far = itertools.count()

    def prepare(v: tuple[int, int]) -> Path:
        dst[v].clear()
        return src[v].fill(template) if fresh_source else template

    def measure(v: tuple[int, int]) -> Any:
        def run(source: Path) -> Sample:
            if remote is None:
                return _copy(source, str(dst[v].path), v)
            # A folder name never used before: rclone serve keeps a directory listing for
            # minutes, and would take a folder deleted under it for one still full.
            name = f"{names[v]}-{next(runs_so_far)}"
            sample = _copy(source, remote.remote(name), v)
            if not fresh_source:
                shutil.rmtree(remote.root / name)  # a few big files: no slower creates after
            return sample

        return run

    sides = [Side(_name(v), measure(v), lambda v=v: prepare(v)) for v in variants]
    runs = interleave(sides, rounds=rounds, warmup=env.warmup, env=env)
    base = _name(variants[0])
    rows = [comparison(label, _name(v), runs[_name(v)], base, runs[base], None) for v in variants]
    folders = [p for slot in [*src.values(), *dst.values()] for p in slot.cleanup()]
    env.cleanup([*folders, *([remote.root] if remote is not None else [])])
    if remote is not None:
        remote.root.mkdir()
    return {"data": label, "variants": rows}


def run(env: Env) -> dict[str, Any]:
    tpl = templates(env)
    desc = sizes(env.quick)
    # Fewer rounds than the goal comparisons: these choose between settings that differ by
    # 10 % and more, and the network runs are long.
    rounds = max(2, env.pairs // 3)
    # --quick only checks that every part works.
    local = VARIANTS[::3] if env.quick else VARIANTS
    network = NETWORK_VARIANTS[::2] if env.quick else NETWORK_VARIANTS
    results: dict[str, Any] = {}
    for key in ("big", "small"):
        results[f"local {key}"] = _group(
            env, f"local-{key}", f"{desc[key]['desc']}, local", tpl[key], local,
            fresh_source=key == "small", remote=None, rounds=rounds,
        )  # fmt: skip
    server = SftpServer(RCLONE, env.fresh("sftp-root")).start()
    try:
        data = {
            "big": tpl["big"],
            # The whole 20,000-file set takes ~40 s per run over sftp here: a quarter of it.
            "small": make_tree(
                env.fresh("tpl-flags-sftp") / "src",
                desc["small"]["files"] // 4,
                desc["small"]["size"],
                per_dir=desc["small"]["per_dir"],
            ),
        }
        for key, template in data.items():
            files = "" if key == "big" else f" ({desc['small']['files'] // 4:,} files)"
            results[f"sftp {key}"] = _group(
                env, f"sftp-{key}", f"{desc[key]['desc']}{files}, to sftp on 127.0.0.1", template,
                network, fresh_source=key == "small", remote=server, rounds=rounds,
            )  # fmt: skip
    finally:
        server.kill()
    results["rounds"] = rounds
    return results
