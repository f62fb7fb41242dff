"""Running ``mqtt-backup serve`` as a real process, and reading what it did from its history."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mqtt_backup.jobs.history import History, RunRecord
from tests.integration.cli_helpers import cli_argv, cli_env, run_cli, wait_for
from tests.integration.mqtt_helpers import Collector, unique_base

INSTANCE = "t"


class Daemon:
    """One ``serve`` of a config in its own temp folder; stderr goes to a log file."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        self.config = config
        self.path = root / "mqtt-backup.yaml"
        self.state_dir = Path(config["state_dir"])
        self.log_path = root / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.write(config)

    # the config file

    def write(self, config: dict[str, Any]) -> None:
        self.config = config
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def base(self) -> str:
        return f"{self.config['mqtt']['base_topic']}/{INSTANCE}"

    @property
    def prefix(self) -> str:
        return str(self.config["mqtt"]["discovery_prefix"])

    def state_topic(self, job: str) -> str:
        return f"{self.base}/jobs/{job}/state"

    def discovery_topic(self, job: str) -> str:
        return f"{self.prefix}/device/{INSTANCE}_{job}/config"

    # the process

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            cli_argv(self.path, "serve"), stdout=log, stderr=log, env=cli_env()
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and the exit code; fails when the process overstays ``timeout``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.process = None

    def kill(self) -> None:
        """SIGKILL, like a power cut, then its rclone children (they would run on as orphans)."""
        assert self.process is not None
        children = child_pids(self.process.pid)
        self.process.kill()
        self.process.wait(10)
        self.process = None
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 15) -> None:
        wait_for(lambda: text in self.log(), timeout, f"{text!r} in the serve log")

    def healthcheck(self) -> int:
        return run_cli(self.path, "healthcheck", timeout=30).returncode

    # what it did

    def runs(self, job: str) -> list[RunRecord]:
        """The job's runs, oldest first."""
        with History(self.state_dir) as history:
            return list(reversed(history.runs(job, 500)))

    def finished(self, job: str, status: str = "completed") -> list[RunRecord]:
        return [r for r in self.runs(job) if r.status == status]

    def collector(self) -> Collector:
        mqtt = self.config["mqtt"]
        return Collector(mqtt["host"], mqtt["port"], [f"{self.base}/#", f"{self.prefix}/#"])


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, from /proc (the kernel's own record)."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def make_config(
    root: Path,
    rclone: str,
    jobs: dict[str, dict[str, Any]],
    broker: Any | None = None,
    **top: Any,
) -> dict[str, Any]:
    base = unique_base()
    config: dict[str, Any] = {
        "instance": INSTANCE,
        "state_dir": str(root / "state"),
        "max_concurrent_jobs": 2,
        "rclone": {"binary": rclone},
        "jobs": jobs,
    }
    if broker is not None:
        config["mqtt"] = {
            "host": broker.host,
            "port": broker.port,
            "base_topic": base,
            # A prefix per test too, so no test sees another's retained discovery.
            "discovery_prefix": f"{base}_ha",
            "progress_interval": "1s",
        }
    config.update(top)
    return config


def make_tree(root: Path, files: int = 1, size: int = 1000) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        (root / f"file{number}.bin").write_bytes(os.urandom(size))
    return root


def parse_ms(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_no_overlap(runs: list[RunRecord]) -> None:
    """Each run started at or after the previous one finished (history stores milliseconds)."""
    spans = sorted((parse_ms(r.started_at), parse_ms(r.finished_at or "9999-01-01")) for r in runs)
    for (_start, end), (next_start, _end) in zip(spans, spans[1:], strict=False):
        assert next_start >= end, f"runs overlap: one ended {end}, the next started {next_start}"


def states(collector: Collector, topic: str) -> list[dict[str, Any]]:
    """Every state payload received on ``topic`` so far, in order (empty payloads skipped)."""
    return [m.json() for m in collector.on(topic) if m.payload]
