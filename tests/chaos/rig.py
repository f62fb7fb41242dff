"""The system under chaos: a real ``serve`` with ten jobs, its broker and two sftp servers."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mqtt_backup.jobs.history import History, RunRecord
from tests.chaos.ledger import Ledger
from tests.chaos.processes import kill_all, rclone_processes, survivors
from tests.chaos.sftp_server import SftpServer
from tests.integration.cli_helpers import cli_argv, cli_env
from tests.integration.conftest import Broker
from tests.integration.mqtt_helpers import Collector
from tests.integration.serve_helpers import Daemon, make_config

# The watchdog bound every run is held to: a run without progress for this long is cancelled.
STALL_TIMEOUT = 5.0
# What a run may take beyond that: progress before the stall, rclone's stop sequence (SIGINT,
# SIGTERM, each with 3 s of grace), a serve killed and restarted meanwhile, a loaded machine.
RUN_GRACE = 8.0
# Local folders: (schedule, verify_then_delete). Sizes stay small: the runs are what matters.
LOCAL_JOBS = {
    "l0": ("every 2s", True),
    "l1": ("every 3s", True),
    "l2": ("every 4s", True),
    "l3": ("every 5s", True),
    "l4": ("every 3s", False),
    "l5": ("every 5s", False),
}
# Two sftp servers, with a bandwidth limit so that an upload is still going when one is killed:
# "a" is killed and restarted, "b" hangs (SIGSTOP) for longer than a run may stall.
SFTP_JOBS = {
    "s0": ("every 2s", True),
    "s1": ("every 3s", True),
    "s2": ("every 4s", True),
    "s3": ("every 5s", False),
}
SERVER_OF = {"s0": "a", "s1": "a", "s2": "b", "s3": "b"}
RETRYING = {"l1", "s1"}
READY_LINE = "serving instance"
# After a SIGKILL of serve, how long its rclone processes may take to follow it.
ORPHAN_GRACE = 0.3


class Recorder(Collector):
    """Every message on the broker, for the whole run; comes back fast after a broker restart."""

    def __init__(self, broker: Broker, username: str, password: str) -> None:
        super().__init__(broker.host, broker.port, ["#"], username=username, password=password)
        self._client.reconnect_delay_set(0.1, 0.5)


class ChaosDaemon(Daemon):
    """``serve`` at DEBUG level, so that rclone's own lines reach the log that is checked."""

    def start(self) -> ChaosDaemon:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                cli_argv(self.path, "--log-level", "DEBUG", "serve"),
                stdout=log,
                stderr=log,
                env=cli_env(),
            )
        return self


@dataclass
class Incident:
    """Something the chaos itself saw go wrong, at a moment a later check cannot reconstruct."""

    at: float
    text: str


@dataclass
class ChaosRig:
    root: Path
    rclone: str
    broker: Broker = field(init=False)
    sftp: dict[str, SftpServer] = field(init=False)
    daemon: ChaosDaemon = field(init=False)
    recorder: Recorder | None = field(init=False, default=None)
    ledger: Ledger = field(default_factory=Ledger)
    incidents: list[Incident] = field(default_factory=list)
    mqtt_user: str = "backup"
    mqtt_password: str = field(default_factory=lambda: secrets.token_hex(12))
    starts: int = 0
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        (self.root / "broker").mkdir()
        self.broker = Broker(self.root / "broker", users={self.mqtt_user: self.mqtt_password})
        self.sftp = {
            name: SftpServer(self.rclone, self.root / f"sftp-{name}", self.root / f"{name}.log")
            for name in sorted(set(SERVER_OF.values()))
        }
        (self.root / "rclone.conf").write_text("")
        config = make_config(self.root, self.rclone, self._jobs(), self.broker)
        config["max_concurrent_jobs"] = 4
        config["mqtt"] |= {"username": self.mqtt_user, "password": self.mqtt_password}
        # Every rclone call then names the test's folder: how its processes are told apart.
        config["rclone"]["config_file"] = str(self.root / "rclone.conf")
        self.daemon = ChaosDaemon(self.root, config)

    def _jobs(self) -> dict[str, dict[str, Any]]:
        jobs: dict[str, dict[str, Any]] = {}
        for name, (schedule, deleting) in {**LOCAL_JOBS, **SFTP_JOBS}.items():
            self.source(name).mkdir(parents=True)
            job: dict[str, Any] = {
                "source": str(self.source(name)),
                "destination": (
                    self.server(name).remote(name)
                    if name in SFTP_JOBS
                    else str(self.destination(name))
                ),
                "schedule": schedule,
            }
            if deleting:
                job["deletion"] = {"mode": "verify_then_delete", "min_age": "0s"}
            if name in SFTP_JOBS:
                job["extra_args"] = ["--bwlimit", "400k"]
            if name in RETRYING:
                job |= {"retries": 1, "retry_delay": "1s"}
            job["stall_timeout"] = f"{STALL_TIMEOUT:g}s"
            jobs[name] = job
        return jobs

    # places

    @property
    def jobs(self) -> list[str]:
        return [*LOCAL_JOBS, *SFTP_JOBS]

    def source(self, job: str) -> Path:
        return self.root / "src" / job

    def server(self, job: str) -> SftpServer:
        return self.sftp[SERVER_OF[job]]

    def destination(self, job: str) -> Path:
        """The folder the job's files end up in: local, or the sftp server's own disk."""
        if job in SFTP_JOBS:
            return self.server(job).root / job
        return self.root / "dst" / job

    @property
    def secrets(self) -> dict[str, str]:
        found = {"MQTT password": self.mqtt_password}
        for name, server in self.sftp.items():
            found[f"password of sftp server {name}"] = server.password
            found[f"obscured password of sftp server {name}"] = server.obscured
        return found

    # the parts

    def start(self) -> None:
        self.broker.start()
        for server in self.sftp.values():
            server.start()
        self.recorder = Recorder(self.broker, self.mqtt_user, self.mqtt_password)
        self.start_daemon()

    def close(self) -> None:
        """Tear down whatever is left, also after a failure half-way."""
        if self.daemon.process is not None:
            with contextlib.suppress(Exception):
                self.daemon.process.kill()
                self.daemon.process.wait(10)
            self.daemon.process = None
        kill_all(list(rclone_processes(str(self.root))))
        for server in self.sftp.values():
            server.kill()
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.close()
        self.broker.stop()

    def note(self, text: str) -> None:
        self.incidents.append(Incident(time.monotonic() - self.t0, text))

    def start_daemon(self, timeout: float = 30.0) -> None:
        """Start serve and wait until it has recovered and scheduled (its start-up line)."""
        self.starts += 1
        self.daemon.start()
        deadline = time.monotonic() + timeout
        while self.daemon.log().count(READY_LINE) < self.starts:
            process = self.daemon.process
            if process is not None and process.poll() is not None:
                self.daemon.process = None
                raise RuntimeError(
                    f"serve exited with {process.returncode} at start:\n{self.daemon.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start within {timeout:.0f}s")
            time.sleep(0.05)

    def check_daemon_alive(self) -> None:
        """A serve that died of itself is an incident; it is started again so the chaos goes on."""
        process = self.daemon.process
        if process is not None and process.poll() is not None:
            self.note(f"serve exited by itself with code {process.returncode}")
            self.daemon.process = None
            self.start_daemon()

    def kill_daemon(self) -> dict[int, str]:
        """SIGKILL serve; returns (and then kills) the rclone processes that outlived it."""
        process = self.daemon.process
        assert process is not None
        process.kill()
        process.wait(10)
        self.daemon.process = None
        left = survivors(str(self.root), ORPHAN_GRACE)
        if left:
            self.note(
                f"{len(left)} rclone process(es) outlived the SIGKILLed serve by "
                f"{ORPHAN_GRACE}s: {self.describe(left)}"
            )
            kill_all(list(left))
        return left

    def describe(self, processes: dict[int, str]) -> str:
        """rclone processes by subcommand and job: "rclone copy of s2 (pid 123)", …"""
        described = []
        for pid, line in sorted(processes.items()):
            argv = line.split()
            job = next(
                (j for j in self.jobs if any(a.startswith(str(self.source(j))) for a in argv)),
                "?",
            )
            described.append(f"rclone {argv[1] if len(argv) > 1 else '?'} of {job} (pid {pid})")
        return ", ".join(described)

    def stop_daemon(self, timeout: float = 40.0) -> int | None:
        """SIGTERM serve; its exit code, or None when it overstayed ``timeout``."""
        process = self.daemon.process
        if process is None:
            return None
        try:
            return self.daemon.stop(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            return None

    def mqtt_publish(self, topic: str, payload: str) -> bool:
        """Publish as a user would (mosquitto_pub, QoS 1); False when the broker is down."""
        done = subprocess.run(
            ["mosquitto_pub", "-h", self.broker.host, "-p", str(self.broker.port),
             "-u", self.mqtt_user, "-P", self.mqtt_password, "-q", "1",
             "-t", topic, "-m", payload],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def retained_states(self) -> dict[str, dict[str, Any]]:
        """Each job's retained state, as a subscriber connecting now receives it."""
        probe = f"probe/{uuid.uuid4().hex}"
        pattern = f"{self.daemon.base}/jobs/+/state"
        collector = Collector(
            self.broker.host,
            self.broker.port,
            [pattern, probe],
            username=self.mqtt_user,
            password=self.mqtt_password,
        )
        try:
            collector.publish(probe, b"x")
            collector.wait_message(probe, timeout=10)
            return {
                m.topic.split("/")[-2]: m.json()
                for m in collector.messages
                if m.retain and m.topic != probe and m.payload
            }
        finally:
            collector.close()

    def runs(self) -> dict[str, list[RunRecord]]:
        """Every job's runs in the history, oldest first."""
        with History(self.daemon.state_dir) as history:
            return {job: list(reversed(history.runs(job, 1_000_000))) for job in self.jobs}
