"""``python -m bench [--quick] [--only NAME]``: run the benchmarks, print a table, save JSON."""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    bench_deletion,
    bench_flags,
    bench_latency,
    bench_scale,
    bench_serve,
    bench_transfer,
    bench_verify,
)
from bench.harness import MQTT_BACKUP, RCLONE, Env, can_drop_caches
from tests.support.broker import Broker

# mosquitto's default max_queued_messages is 1000 (per client, QoS 1/2 beyond those in
# flight): a QoS 1 subscriber to 1,000+ retained states silently receives only part of them.
# The bench broker lifts it, as a large installation must (see README.md).
MAX_QUEUED_MESSAGES = 100_000
BROKER_SETTINGS = [f"max_queued_messages {MAX_QUEUED_MESSAGES}", "set_tcp_nodelay true"]
# A 3 % goal is not called met or missed on fewer measured pairs than this.
DEFAULT_PAIRS = 15

BENCHMARKS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "transfer": bench_transfer.run,
    "serve": bench_serve.run,
    "verify": bench_verify.run,
    "latency": bench_latency.run,
    "scale": bench_scale.run,
    "deletion": bench_deletion.run,
    "flags": bench_flags.run,
}
RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 pairs without a warm-up round, warm cache")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--pairs", type=int, help=f"measured A/B pairs (default: {DEFAULT_PAIRS}, quick: 2)"
    )
    parser.add_argument(
        "--cache",
        choices=["cold", "warm"],
        help="drop the page cache before each run (cold, default) or not (warm, default with --quick)",
    )
    parser.add_argument(
        "--output", type=Path, help="JSON file (default: bench/results/latest.json)"
    )
    parser.add_argument(
        "--tmp", type=Path, help="parent of the temporary folder (default: $TMPDIR)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the benchmarks run now in the JSON file, keep the others",
    )
    parser.add_argument(
        "--monitors",
        action="store_true",
        help="latency: every monitor kind configured, pinging a receiver on 127.0.0.1",
    )
    return parser.parse_args(argv)


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def compile_bytecode() -> str:
    """Compile mqtt-backup's modules to bytecode, as ``pip install`` does.

    An editable install never gets bytecode from pip, and with PYTHONDONTWRITEBYTECODE set
    (as in many containers and CI images) Python then compiles every module on every run:
    about 45 ms per run-job that no installed copy pays.
    """
    spec = importlib.util.find_spec("mqtt_backup")
    if spec is None or not spec.submodule_search_locations:
        return "mqtt_backup not importable here"
    folder = next(iter(spec.submodule_search_locations))
    ok = compileall.compile_dir(folder, quiet=1)
    return f"compiled before timing ({folder})" if ok else f"could not compile {folder}"


def meta(args: argparse.Namespace, env: Env, bytecode: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "monitors": args.monitors,
        "pairs": env.pairs,
        "warmup": env.warmup,
        "cache": "cold (sync + drop_caches before each run)" if env.cold else "warm",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "rclone": _version([RCLONE, "version"]),
        "mqtt_backup": _version([MQTT_BACKUP, "--version"]),
        "bytecode": bytecode,
        "broker": f"mosquitto, max_queued_messages {MAX_QUEUED_MESSAGES}, set_tcp_nodelay true",
    }


def merged(output: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``report``'s benchmarks put into the one saved at ``output``; each benchmark keeps
    the conditions it was measured under in ``measured``."""
    try:
        saved = json.loads(output.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return report
    measured = saved.get("measured") or dict.fromkeys(saved["results"], saved["meta"])
    for name, result in report["results"].items():
        saved["results"][name] = result
        measured[name] = report["meta"]
    kept_errors = saved.get("errors", {}).items()
    saved["errors"] = {n: e for n, e in kept_errors if n not in report["results"]}
    saved["errors"] |= report["errors"]
    saved["measured"] = measured
    saved["meta"] = report["meta"]
    return saved


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
    root = Path(tempfile.mkdtemp(prefix="mqtt-backup-bench-", dir=args.tmp))
    cache = args.cache or ("warm" if args.quick else "cold")
    broker = Broker(root / "broker", settings=BROKER_SETTINGS)
    # run-job's config cache, in the temporary folder: nothing of the bench stays behind.
    os.environ["MQTT_BACKUP_CACHE_DIR"] = str(root / "config-cache")
    failures = 0
    report: dict[str, Any] = {"meta": {}, "results": {}, "errors": {}}
    try:
        broker.start()
        env = Env(
            root=root,
            broker_host=broker.host,
            broker_port=broker.port,
            quick=args.quick,
            pairs=args.pairs or (2 if args.quick else DEFAULT_PAIRS),
            # --quick checks that every part works; a warm-up round tells it nothing more.
            warmup=0 if args.quick else 1,
            monitors=args.monitors,
            cold=cache == "cold",
        )
        if env.cold and not can_drop_caches():
            print(
                "note: cannot write /proc/sys/vm/drop_caches (not root): runs are warm",
                file=sys.stderr,
            )
        report["meta"] = meta(args, env, compile_bytecode())
        for name in names:
            print(f"== {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                report["results"][name] = BENCHMARKS[name](env)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
                failures += 1
                report["errors"][name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            print(f"   {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        # The report first: removing millions of small files takes minutes.
        from bench.table import render

        print(render(report), flush=True)
        if args.merge:
            report = merged(output, report)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {output}", flush=True)
    finally:
        broker.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            print(f"removing {root} ...", file=sys.stderr, flush=True)
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0
