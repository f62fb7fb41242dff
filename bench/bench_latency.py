"""4. Terminal-state latency: from rclone's exit to the retained terminal state at a subscriber.

rclone is wrapped in a bash script that runs the real rclone and, for the transfer
(``copy``) only, appends ``$EPOCHREALTIME`` (a bash builtin: no fork) the moment it
exits. A subscriber in this process stamps each message with ``time.time()`` when
paho hands it over. Both clocks are CLOCK_REALTIME on the same host, so the
difference is the time the state took from rclone's exit to the subscriber.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.harness import MQTT_BACKUP, RCLONE, Env, make_tree, percentile, summary
from tests.support.mqtt import Collector, Received

GOAL_P99 = 0.100
TERMINAL = {"completed", "failed", "cancelled", "interrupted"}

WRAPPER = """#!/bin/bash
# rclone, recording the moment the transfer exits (bench: terminal-state latency)
if [ "$1" = copy ]; then
    {real} "$@"
    rc=$?
    printf '%s\\n' "$EPOCHREALTIME" >> {log}
    exit $rc
fi
exec {real} "$@"
"""


@contextmanager
def receiver() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 that answers 200 and counts what it got (--monitors)."""
    got: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = _answer

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def monitors(base: str) -> dict[str, Any]:
    """Every monitor kind, each reporting every ending it can."""
    every = ["started", "completed", "warning", "failed", "cancelled", "interrupted", "skipped"]
    return {
        "monitors": [
            {"healthchecks": f"{base}/hc/{{job}}"},
            {"uptime_kuma": f"{base}/api/push/token?status=up&msg=OK&ping="},
            {"ntfy": {"url": f"{base}/topic", "on": every}},
            {"webhook": {"url": f"{base}/hook", "on": every, "headers": {"X-Token": "t"}}},
        ]
    }


def run(env: Env) -> dict[str, Any]:
    if not env.monitors:
        return _run(env, None)
    with receiver() as (base, got):
        result = _run(env, base)
        result["latency"]["pings_received"] = len(got)
        return result


def _run(env: Env, monitor_base: str | None) -> dict[str, Any]:
    runs = 5 if env.quick else 50
    source = make_tree(env.fresh("tpl-tiny") / "src", 3, 1024, per_dir=3)
    dest = env.fresh("dst-latency")
    exits = env.root / "rclone-exits.txt"
    wrapper = env.root / "rclone-wrapped"
    wrapper.write_text(WRAPPER.format(real=RCLONE, log=exits), encoding="utf-8")
    wrapper.chmod(0o755)
    state = env.fresh("state")
    config = env.config(
        env.root / "latency.yaml",
        {"tiny": {"source": str(source), "destination": str(dest)}},
        state_dir=state,
        base_topic="bench_latency",
        rclone_binary=str(wrapper),
        extra=monitors(monitor_base) if monitor_base else None,
    )
    seen: set[str] = set()
    terminal: list[tuple[float, str]] = []
    lock = threading.Lock()

    def on_message(msg: Received) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if payload.get("status") in TERMINAL and payload.get("run_id") not in seen:
            with lock:
                seen.add(payload["run_id"])
                terminal.append((msg.wall, payload["status"]))

    sub = Collector(
        env.broker_host,
        env.broker_port,
        ["bench_latency/bench/jobs/tiny/state"],
        on_message=on_message,
    )
    latencies: list[float] = []
    try:
        for number in range(env.warmup + runs):
            subprocess.run(
                [MQTT_BACKUP, "-c", str(config), "run-job", "tiny"],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if not sub.wait_until(lambda n=number: len(terminal) > n, timeout=10):
                raise RuntimeError("no terminal state arrived within 10 s")
            exited = float(Path(exits).read_text().split()[-1])
            at, status = terminal[number]
            if status != "completed":
                raise RuntimeError(f"the tiny job ended {status}")
            if number >= env.warmup:
                latencies.append(at - exited)
    finally:
        sub.close()
    return {
        "latency": {
            "runs": len(latencies),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "seconds": summary(latencies),
            "all": latencies,
            "goal_p99": GOAL_P99,
            "monitors": "every kind, to a receiver on 127.0.0.1" if monitor_base else "none",
            "met": percentile(latencies, 99) <= GOAL_P99,
            "method": (
                "rclone wrapped in bash; $EPOCHREALTIME appended when the copy exits; "
                "subscriber (QoS 1, same host) stamps time.time() on receipt; "
                "latency = receipt - exit, CLOCK_REALTIME on both sides"
            ),
        }
    }
