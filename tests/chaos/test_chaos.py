"""The chaos run: a real ``serve`` with ten jobs, disturbed in every way at once, then checked.

For CHAOS_SECONDS (per seed, default 15, and at least one full hang of an sftp server) a
seeded driver restarts mosquitto, kills one sftp server mid-upload and hangs the other,
deletes and corrupts backed-up copies, writes and rewrites source files, sends run and cancel
commands, and SIGKILLs and restarts serve. Then every job runs once more in calm, serve is
stopped with SIGTERM, and the promises are checked: no file lost, no run stuck, no overlap,
the last states retained, no orphaned rclone, no secret anywhere, no traceback.

Replay a seed, or run longer: CHAOS_SEEDS=123,456 CHAOS_SECONDS=600 pytest tests/chaos -s
(timing still differs between replays; the seed fixes what the driver does, and in which order).
"""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.chaos import checks
from tests.chaos.driver import Driver
from tests.chaos.ledger import lost_files
from tests.chaos.processes import kill_all, survivors
from tests.chaos.rig import ORPHAN_GRACE, RUN_GRACE, STALL_TIMEOUT, ChaosRig

SECONDS = float(os.environ.get("CHAOS_SECONDS", "15"))
SEEDS = (
    [int(seed) for seed in os.environ["CHAOS_SEEDS"].split(",") if seed.strip()]
    if os.environ.get("CHAOS_SEEDS")
    else [random.SystemRandom().randrange(1 << 32) for _ in range(2)]
)
# After the chaos: how long every job gets for a run that starts and ends in calm.
SETTLE = 20.0


def replay(seed: int) -> str:
    return f"CHAOS_SEEDS={seed} CHAOS_SECONDS={SECONDS:g} pytest tests/chaos/test_chaos.py -s"


@pytest.mark.timeout(SECONDS * 3 + 180)
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{seed}" for seed in SEEDS])
def test_chaos(seed: int, tmp_path: Path, rclone_binary: str) -> None:
    print(f"\nchaos seed {seed}; replay: {replay(seed)}")
    rig = ChaosRig(tmp_path, rclone_binary)
    driver = Driver(rig, seed)
    try:
        rig.start()
        driver.run(SECONDS)
        phases = [f"chaos until {time.monotonic() - rig.t0:.1f}s"]
        settle(rig)
        phases.append(f"settled at {time.monotonic() - rig.t0:.1f}s")
        code = rig.stop_daemon()
        phases.append(f"stopped at {time.monotonic() - rig.t0:.1f}s")
        left = survivors(str(tmp_path), ORPHAN_GRACE)
        kill_all(list(left))
        violations = check(rig, code, left)
    finally:
        rig.close()
    print("\n".join(driver.actions))
    print(outcome(rig, violations), "; ".join(phases))
    summary = "\n  ".join(violations)
    actions = "\n  ".join(driver.actions[-40:])
    assert not violations, (
        f"chaos seed {seed} broke {len(violations)} promise(s):\n  {summary}\n"
        f"last actions:\n  {actions}\nreplay: {replay(seed)}"
    )


def settle(rig: ChaosRig) -> None:
    """Ask every job to run once more in calm, and wait until each has (bounded)."""
    since = {job: len(records) for job, records in rig.runs().items()}
    for job in rig.jobs:
        rig.mqtt_publish(f"{rig.daemon.base}/jobs/{job}/run", "")
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        runs = rig.runs()
        if all(
            any(r.finished_at for r in records[since[job] :]) for job, records in runs.items()
        ):
            return
        time.sleep(0.25)


def check(rig: ChaosRig, code: int | None, left: dict[int, str]) -> list[str]:
    violations = [f"during the chaos: {incident.text}" for incident in rig.incidents]
    if code != 0:
        violations.append(f"serve did not stop cleanly on SIGTERM (exit code {code})")
    if left:
        violations.append(f"rclone outlived the stopped serve: {rig.describe(left)}")
    runs = rig.runs()
    violations += lost_files(rig.ledger, rig.source, rig.destination)
    violations += checks.stuck_runs(runs, timedelta(seconds=STALL_TIMEOUT + RUN_GRACE))
    violations += checks.overlapping_runs(runs)
    violations += checks.retained_mismatches(rig.retained_states(), runs)
    assert rig.recorder is not None
    messages = [
        (f"the MQTT message on {m.topic}", m.topic.encode() + b"\0" + m.payload)
        for m in rig.recorder.messages
    ]
    log = rig.daemon.log()
    files = [
        (f"the history file {p.name}", p.read_bytes())
        for p in rig.daemon.state_dir.glob("history.sqlite3*")
    ]
    violations += checks.leaked_secrets(
        [*messages, ("serve's log", log.encode()), *files], rig.secrets
    )
    violations += checks.tracebacks(log)
    # The run must have done something, or every check above passes for nothing.
    completed = sum(1 for records in runs.values() for r in records if r.status == "completed")
    deleted = sum(r.files_deleted for records in runs.values() for r in records)
    if completed < len(rig.jobs) or deleted == 0 or rig.ledger.count() == 0:
        violations.append(
            f"too little happened to judge: {completed} completed runs, {deleted} source "
            f"files deleted after verification, {rig.ledger.count()} file versions written"
        )
    return violations


def outcome(rig: ChaosRig, violations: list[str]) -> str:
    """One line on what the chaos did, for the log of a passing run too."""
    statuses: dict[str, int] = {}
    for records in rig.runs().values():
        for run in records:
            statuses[run.status] = statuses.get(run.status, 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    deleted = sum(r.files_deleted for records in rig.runs().values() for r in records)
    messages = len(rig.recorder.messages) if rig.recorder is not None else 0
    return (
        f"runs: {counts}; {rig.ledger.count()} file versions written, {deleted} deleted "
        f"after verification; {messages} MQTT "
        f"messages seen; serve started {rig.starts} times; {len(violations)} violation(s)"
    )
