"""Hooks as real processes around real rclone runs: exit 0, 1 and 75, hangs, cancels, output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.models import PASSWORD_ENV
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.engine.orphans import start_time
from mqtt_backup.errors import RcloneNotFound
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.state import JobState
from tests.integration.cli_helpers import (
    cli_argv,
    cli_env,
    make_tree,
    run_cli,
    start_cli,
    tree,
    wait_for,
    write_config,
)
from tests.integration.mqtt_helpers import Collector, retained_snapshot, unique_topics

FILES = {"a.txt": b"alpha", "dir/b.bin": os.urandom(5000)}
BROKER_PASSWORD = "hunter2-broker-password"  # noqa: S105 - a test value


class Phases:
    """A sink that keeps every (status, phase) it sees, in order, without repeats."""

    name = "phases"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def run_started(self, state: JobState) -> None:
        self.state_changed(state)

    def state_changed(self, state: JobState) -> None:
        if not self.seen or self.seen[-1] != (state.status, state.phase):
            self.seen.append((state.status, state.phase))

    def run_finished(self, state: JobState) -> None:
        self.state_changed(state)


def log_to(path: Path, text: str) -> list[str]:
    """A hook that appends a line (shell-expanded) to ``path``; the path travels as ``$0``."""
    return ["sh", "-c", f'echo "{text}" >> "$0"', str(path)]


def env_dump(path: Path) -> list[str]:
    """A hook that writes its whole environment, one NAME=value a line, to ``path``."""
    return ["sh", "-c", 'env > "$0"', str(path)]


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def alive(pid: int) -> bool:
    return start_time(pid) is not None


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test, should one have outlived what should have ended it."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


Build = Callable[..., tuple[JobExecutor, Phases]]


@pytest.fixture
def job(make_config: Any, tmp_path: Path) -> Iterator[Build]:
    """An executor with real rclone and one job ``photos``; ``hooks`` are the job's own."""
    histories: list[History] = []
    make_tree(tmp_path / "src", FILES)

    def build(
        hooks: dict[str, Any], *, engine: Any = None, **overrides: Any
    ) -> tuple[JobExecutor, Phases]:
        job = {
            "source": str(tmp_path / "src"),
            "destination": str(tmp_path / "dst"),
            "hooks": hooks,
            "retry_delay": "0s",
        }
        config = make_config({"jobs": {"photos": job | overrides.pop("job", {})}} | overrides)
        history = History(config.state_dir).open()
        histories.append(history)
        phases = Phases()
        return JobExecutor(config, history, engine=engine, sinks=[phases]), phases

    yield build
    for history in histories:
        history.close()


def hooks_of(executor: JobExecutor) -> list[dict[str, object]]:
    (run, *_) = executor.history.runs("photos")
    return run.hook_records()


def test_hooks_that_succeed_run_in_order_around_the_backup(job: Build, tmp_path: Path) -> None:
    log, env = tmp_path / "log", tmp_path / "before.env"
    dst = tmp_path / "dst" / "a.txt"
    executor, phases = job(
        {
            "before": [
                env_dump(env),
                ["sh", "-c", f'test -e {dst} && echo present >> {log} || echo absent >> {log}'],
            ],
            "after": [log_to(log, "after $MQTT_BACKUP_STATUS, copied: $(cat " + str(dst) + ")")],
            "on_failure": [log_to(log, "on_failure")],
        }
    )
    final = executor.run("photos", "cli")
    assert final.status == "completed" and final.error is None
    assert final.last_success_at == final.finished_at
    assert tree(tmp_path / "dst") == FILES
    # The before hooks ran before rclone, the after hook after it; no failure, so no on_failure.
    assert log.read_text().splitlines() == ["absent", "after completed, copied: alpha"]
    told = read_env(env)
    assert told["MQTT_BACKUP_JOB_ID"] == "photos"
    assert told["MQTT_BACKUP_RUN_ID"] == final.run_id
    assert (told["MQTT_BACKUP_HOOK"], told["MQTT_BACKUP_STATUS"]) == ("before", "running")
    assert (told["MQTT_BACKUP_TRIGGER"], told["MQTT_BACKUP_DRY_RUN"]) == ("cli", "0")
    assert executor.sinks.drain(5)
    assert phases.seen == [
        ("running", "before_hook"),
        ("running", "transferring"),
        ("running", "after_hook"),
        ("completed", "done"),
    ]
    assert [(h["hook"], h["number"], h["ending"], h["exit_code"]) for h in hooks_of(executor)] == [
        ("before", 1, "ok", 0),
        ("before", 2, "ok", 0),
        ("after", 1, "ok", 0),
    ]


def test_a_before_hook_exiting_75_skips_the_run(job: Build, tmp_path: Path) -> None:
    disk, log = str(tmp_path / "disk-present"), tmp_path / "log"
    executor, _ = job(
        {
            "before": [
                ["sh", "-c", 'test -e "$0" || { echo "backup disk not connected"; exit 75; }', disk]
            ],
            "after": [log_to(log, "after")],
            "on_failure": [log_to(log, "on_failure")],
        }
    )
    Path(disk).touch()
    succeeded = executor.run("photos", "schedule")
    assert succeeded.status == "completed"
    log.unlink()
    Path(disk).unlink()
    make_tree(tmp_path / "src", {"new.txt": b"written while the disk was away"})

    skipped = executor.run("photos", "schedule")
    assert skipped.status == skipped.last_result == "skipped"
    assert skipped.error == "skipped by before hook 1 (sh): backup disk not connected"
    # No rclone ran, and the last success stays where it was, for Overdue to see.
    assert "new.txt" not in tree(tmp_path / "dst")
    assert skipped.last_success_at == succeeded.last_success_at
    assert not log.exists()  # neither after nor on_failure hooks
    assert [(r.status, r.error) for r in executor.history.runs("photos")][0] == (
        "skipped",
        "skipped by before hook 1 (sh): backup disk not connected",
    )
    # What a restart reads back, too (kept to the second).
    saved = executor.history.last_states()["photos"].last_success_at
    assert succeeded.last_success_at is not None
    assert saved == succeeded.last_success_at.replace(microsecond=0)


def test_a_before_hook_that_fails_fails_the_run_without_rclone(
    job: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, BROKER_PASSWORD)
    before_env, failure_env = tmp_path / "before.env", tmp_path / "failure.env"
    log = tmp_path / "log"
    executor, phases = job(
        {
            "before": [
                env_dump(before_env),
                ["sh", "-c", f"echo 'pg_dump: password for {BROKER_PASSWORD} refused' >&2; exit 1"],
                log_to(log, "second before hook"),
            ],
            "on_failure": [env_dump(failure_env)],
            "after": [log_to(log, "after")],
        },
        mqtt={"host": "127.0.0.1"},
    )
    final = executor.run("photos", "cli")
    expected = "before hook 2 (sh) exited 1: pg_dump: password for *** refused"
    assert (final.status, final.error) == ("failed", expected)
    assert not (tmp_path / "dst").exists()  # rclone never ran
    assert not log.exists()  # no later before hook, no after hook
    # A hook is never handed the broker's password, and what it says is masked.
    assert PASSWORD_ENV not in read_env(before_env)
    told = read_env(failure_env)
    assert (told["MQTT_BACKUP_HOOK"], told["MQTT_BACKUP_STATUS"]) == ("on_failure", "failed")
    assert (told["MQTT_BACKUP_ERROR"], told["MQTT_BACKUP_WILL_RETRY"]) == (expected, "0")
    records = hooks_of(executor)
    assert [(h["hook"], h["ending"]) for h in records] == [
        ("before", "ok"),
        ("before", "failed"),
        ("on_failure", "ok"),
    ]
    assert records[1]["output"] == "pg_dump: password for *** refused\n"
    assert BROKER_PASSWORD not in repr(executor.history.runs("photos"))
    assert executor.sinks.drain(5)
    assert ("running", "on_failure_hook") in phases.seen
    assert ("running", "transferring") not in phases.seen


def test_a_hook_that_hangs_past_its_timeout_is_stopped_with_its_children(
    job: Build, tmp_path: Path, leftovers: list[int]
) -> None:
    pids = tmp_path / "pids"
    # A shell's background job ignores SIGINT: only the rest of the stop sequence ends it.
    hang = ["sh", "-c", 'echo $$ > "$0"; sleep 60 & echo $! >> "$0"; wait', str(pids)]
    executor, _ = job({"before": [{"run": hang, "timeout": "1s"}]})
    begun = time.monotonic()
    final = executor.run("photos", "cli")
    took = time.monotonic() - begun
    assert final.status == "failed"
    assert final.error == "before hook 1 (sh) did not finish within 1s; stopped"
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    leftovers += [shell, sleeper]
    assert not alive(shell) and not alive(sleeper)
    assert took < 1 + 3 + 3, took  # the timeout, then at most the SIGINT and SIGTERM graces
    assert not (tmp_path / "dst").exists()
    [record] = hooks_of(executor)
    assert (record["ending"], record["exit_code"]) == ("timed_out", None)


def test_a_cancel_stops_the_running_hook_and_starts_no_other(
    job: Build, tmp_path: Path, leftovers: list[int]
) -> None:
    log = tmp_path / "log"
    executor, _ = job(
        {
            "before": [["sleep", "60"]],
            "on_failure": [log_to(log, "on_failure")],
            "after": [log_to(log, "after")],
        }
    )
    finals: list[JobState] = []
    runner = threading.Thread(target=lambda: finals.append(executor.run("photos", "command")))
    runner.start()
    try:
        state = wait_for(
            lambda: executor.state("photos").phase == "before_hook" and executor.state("photos"),
            what="the before hook",
        )
        # Recorded like rclone, so that a start-up after a crash can stop it.
        [(pid, started)] = wait_for(
            lambda: executor.history.processes(str(state.run_id)), what="the hook's record"
        )
        leftovers.append(pid)
        assert start_time(pid) == started
        begun = time.monotonic()
        assert executor.cancel("photos")
        runner.join(10)
        assert time.monotonic() - begun < 3.5  # sleep ends on SIGINT
    finally:
        executor.cancel("photos")
        runner.join(10)
    [final] = finals
    assert (final.status, final.error) == ("cancelled", "cancelled")
    assert not alive(pid)
    assert not log.exists()
    assert executor.history.processes(str(state.run_id)) == []


def test_after_a_failed_backup_on_failure_hooks_run_then_after_hooks(
    job: Build, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    executor, _ = job(
        {
            "on_failure": [log_to(log, "on_failure: $MQTT_BACKUP_ERROR")],
            # Cleaning up may fail too: the run keeps the backup's own error.
            "after": [["sh", "-c", f'echo "after: $MQTT_BACKUP_STATUS" >> {log}; exit 1']],
        },
        job={"source": str(tmp_path / "missing")},
    )
    final = executor.run("photos", "cli")
    assert (final.status, final.error) == ("failed", "source directory not found")
    assert log.read_text().splitlines() == [
        "on_failure: source directory not found",
        "after: failed",
    ]
    endings = [(h["hook"], h["ending"]) for h in hooks_of(executor)]
    assert endings == [("on_failure", "ok"), ("after", "failed")]


def test_on_failure_hooks_hear_of_a_run_that_could_not_start_rclone(
    job: Build, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    executor, _ = job(
        {"on_failure": [log_to(log, "$MQTT_BACKUP_ERROR")]},
        rclone={"binary": str(tmp_path / "no-rclone")},
    )
    final = executor.run("photos", "cli")
    assert final.status == "failed"
    assert log.read_text().splitlines() == [final.error]
    assert "not found" in str(final.error)


def test_on_failure_and_after_hooks_run_when_the_engine_raises(job: Build, tmp_path: Path) -> None:
    log = tmp_path / "log"

    def broken(*_args: Any, **_kwargs: Any) -> RunOutcome:
        raise RcloneNotFound("rclone not found at /nope; install it or set rclone.binary")

    executor, _ = job(
        {"on_failure": [log_to(log, "on_failure")], "after": [log_to(log, "after")]},
        engine=broken,
    )
    final = executor.run("photos", "cli")
    assert (final.status, final.error) == (
        "failed",
        "rclone not found at /nope; install it or set rclone.binary",
    )
    assert log.read_text().splitlines() == ["on_failure", "after"]


def test_an_after_hook_that_fails_leaves_a_completed_run_with_a_warning(
    job: Build, tmp_path: Path
) -> None:
    executor, _ = job({"after": [["sh", "-c", "echo 'umount: /mnt/usb: target is busy'; exit 32"]]})
    final = executor.run("photos", "cli")
    assert final.status == "completed"
    assert final.error == "after hook 1 (sh) exited 32: umount: /mnt/usb: target is busy"
    # The files are at the destination: the backup succeeded, and says so.
    assert final.last_success_at == final.finished_at
    assert tree(tmp_path / "dst") == FILES


def test_a_cancel_during_the_after_hooks_keeps_the_backup_a_success(
    job: Build, tmp_path: Path
) -> None:
    executor, _ = job({"after": [["sleep", "60"]]})
    finals: list[JobState] = []
    runner = threading.Thread(target=lambda: finals.append(executor.run("photos", "command")))
    runner.start()
    try:
        wait_for(lambda: executor.state("photos").phase == "after_hook", what="the after hook")
        assert executor.cancel("photos")
        runner.join(10)
    finally:
        executor.cancel("photos")
        runner.join(10)
    [final] = finals
    assert final.status == "completed" and final.last_success_at == final.finished_at
    assert final.error == "after hook 1 (sleep) was cancelled"
    assert tree(tmp_path / "dst") == FILES


def test_a_hook_that_cannot_start_fails_the_run(job: Build, tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    executor, _ = job({"before": [[str(script)]]})
    final = executor.run("photos", "cli")
    assert final.status == "failed"
    assert final.error == (
        f"before hook 1 (not-executable.sh) could not start: {script} cannot be run "
        "(permission denied)"
    )


def test_a_hooks_output_is_kept_masked_and_only_its_end(
    job: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, BROKER_PASSWORD)
    # 100 kB without a line break, then the line that says what went wrong.
    noisy = f"head -c 100000 /dev/zero | tr '\\0' x; echo; echo 'login {BROKER_PASSWORD} ok'"
    executor, _ = job({"before": [["sh", "-c", noisy]]}, mqtt={"host": "127.0.0.1"})
    assert executor.run("photos", "cli").status == "completed"
    [record] = hooks_of(executor)
    output = str(record["output"])
    assert output == "login *** ok\n"  # the part-line at the cut goes too
    assert record["dropped"] == 100_001


def test_a_dry_run_runs_its_hooks_and_tells_them(job: Build, tmp_path: Path) -> None:
    env = tmp_path / "after.env"
    executor, _ = job({"after": [env_dump(env)]})
    final = executor.run("photos", "cli", dry_run=True)
    assert final.status == "completed" and final.dry_run
    assert not (tmp_path / "dst").exists()
    assert read_env(env)["MQTT_BACKUP_DRY_RUN"] == "1"


def test_on_failure_hooks_know_whether_a_retry_follows(job: Build, tmp_path: Path) -> None:
    log = tmp_path / "log"
    outcomes = [RunOutcome("failed", error="connection refused", retryable=True)] * 2

    def engine(*_args: Any, **_kwargs: Any) -> RunOutcome:
        return outcomes.pop(0)

    executor, _ = job(
        {"on_failure": [log_to(log, "$MQTT_BACKUP_ATTEMPT $MQTT_BACKUP_WILL_RETRY")]},
        engine=engine,
        job={"retries": 1},
    )
    assert executor.run("photos", "schedule").status == "failed"
    assert log.read_text().splitlines() == ["1 1", "2 0"]


# run-job, with MQTT


def test_run_job_exits_75_and_publishes_a_skipped_run(
    tmp_path: Path, rclone_binary: str, mosquitto: Any
) -> None:
    topics = unique_topics()
    make_tree(tmp_path / "src", FILES)
    dst = tmp_path / "dst"
    config = write_config(
        tmp_path / "c.yaml",
        {
            "instance": "lab",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, **topics},
            "hooks": {"before": [["sh", "-c", "echo 'no USB disk'; exit 75"]]},
            "jobs": {"usb": {"source": str(tmp_path / "src"), "destination": str(dst)}},
        },
    )
    base = f"{topics['base_topic']}/lab/jobs/usb"
    events = Collector(mosquitto.host, mosquitto.port, [f"{base}/event"])
    try:
        result = run_cli(config, "run-job", "usb")
        assert result.returncode == 75, result.stderr
        assert "usb: skipped" in result.stdout
        event = events.wait_message(f"{base}/event").json()
    finally:
        events.close()
    reason = "skipped by before hook 1 (sh): no USB disk"
    assert (event["event_type"], event["error"]) == ("skipped", reason)
    retained = retained_snapshot(mosquitto.host, mosquitto.port, f"{base}/state")
    state = json.loads(retained[f"{base}/state"])
    assert (state["status"], state["phase"], state["last_result"]) == ("skipped", "done", "skipped")
    assert state["last_success_at"] is None
    assert not dst.exists()
    shown = run_cli(config, "history", "usb", "--hooks")
    assert reason in shown.stdout
    assert "no USB disk" in shown.stdout.split("==")[-1]


def test_a_hook_dies_with_a_killed_run_job(
    tmp_path: Path, rclone_binary: str, leftovers: list[int]
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path / "c.yaml",
        {
            "state_dir": str(state_dir),
            "rclone": {"binary": rclone_binary},
            "jobs": {
                "usb": {
                    "source": str(tmp_path / "src"),
                    "destination": str(tmp_path / "dst"),
                    "hooks": {"before": [["sleep", "60"]]},
                }
            },
        },
    )
    cli = start_cli(config, "run-job", "usb")

    def recorded() -> list[tuple[int, int]]:
        if not (state_dir / "history.sqlite3").exists():
            return []
        with History(state_dir) as history:
            return [p for run in history.running_runs() for p in history.processes(run.run_id)]

    try:
        [(pid, _)] = wait_for(recorded, what="the hook to start")
        leftovers.append(pid)
    finally:
        cli.kill()
        cli.communicate(timeout=10)
    wait_for(lambda: not alive(pid), timeout=5, what="the hook to end with mqtt-backup")


def test_validate_names_each_hook_program_it_cannot_run(tmp_path: Path, rclone_binary: str) -> None:
    script = tmp_path / "mount-disk.sh"
    script.write_text("#!/bin/sh\nexit 0\n")  # not executable
    config = write_config(
        tmp_path / "c.yaml",
        {
            "rclone": {"binary": rclone_binary},
            "hooks": {"on_failure": [["no-such-notifier", "--x"]], "after": [["sh", "-c", ":"]]},
            "jobs": {
                "usb": {
                    "source": str(tmp_path),
                    "destination": "/mnt/backup",
                    "hooks": {"before": [["true"], ["./mount-disk.sh"]]},
                }
            },
        },
    )
    result = run_cli(config, "validate")
    assert result.returncode == 2
    assert [line.split(" (line ")[0] for line in result.stderr.splitlines()[1:]] == [
        "  hooks.on_failure.0.run: 'no-such-notifier' is not found on PATH; the runs of this "
        "hook would fail",
        f"  jobs.usb.hooks.before.1.run: '{script}' does not exist or is not executable; the "
        "runs of this hook would fail",
    ]
    script.chmod(0o755)
    (tmp_path / "bin").mkdir()
    notifier = tmp_path / "bin" / "no-such-notifier"
    notifier.write_text("#!/bin/sh\n")
    notifier.chmod(0o755)
    env_path = f"{tmp_path / 'bin'}:{os.environ['PATH']}"
    fixed = subprocess.run(
        cli_argv(config, "validate"),
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env() | {"PATH": env_path},
    )
    assert fixed.returncode == 0, fixed.stderr
