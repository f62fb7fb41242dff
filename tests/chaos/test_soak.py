"""A sped-up soak: thousands of short runs through a real ``serve``, its resources sampled.

Months of a busy installation's runs compressed into 40 seconds: 50 jobs every second, about
2,000 runs, a tenth of them failing. What is measured is serve itself (scheduler, executor,
history, publisher, the process plumbing of each rclone call), so rclone is a stand-in here:
a shell script that answers as rclone 1.75 does, replaying captured output (a copy, or a
failed copy), so each run still starts a process, reads its JSON log and parses it. Real
rclone costs ~0.1 s of CPU per call, which would turn these runs into half an hour on two
cores; the chaos run uses the real one.

SOAK_SECONDS (default 30) sets the length: SOAK_SECONDS=600 pytest tests/chaos/test_soak.py -s
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqtt_backup.jobs.history import History
from tests.conftest import DATA
from tests.integration.conftest import Broker
from tests.integration.serve_helpers import Daemon, make_config

SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
JOBS = 50
FAILING = {f"j{n:02d}" for n in range(0, JOBS, 10)}  # every tenth job fails each run
KEEP_RUNS = 10
WARM_UP = 12.0  # by then every job has KEEP_RUNS runs and the history is at its bound
# Threads and descriptors come and go with each run, and all jobs fire on the same beat: a
# second's floor (its fewest) is what a leak would raise, whatever moment a sample hits.
SAMPLE_EVERY = 0.1

STAND_IN = """#!/bin/sh
# Answers like rclone 1.75 without doing the work: captured output, captured exit code.
if [ "$1" = version ]; then echo "rclone v1.75.2"; exit 0; fi
case "$*" in
  *failing*) log="{error}"; code=3 ;;
  *) log="{ok}"; code=0 ;;
esac
while IFS= read -r line; do
  case "$line" in '#'*|exit=*) ;; *) printf '%s\\n' "$line" >&2 ;; esac
done < "$log"
exit $code
"""


@dataclass(frozen=True)
class Sample:
    at: float
    rss_kib: int
    threads: int
    fds: int
    history_bytes: int


def sample(pid: int, state_dir: Path, at: float) -> Sample:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    history = sum(p.stat().st_size for p in state_dir.glob("history.sqlite3*"))
    return Sample(
        at=at,
        rss_kib=int(status["VmRSS"].split()[0]),
        threads=int(status["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        history_bytes=history,
    )


def floors(samples: list[Sample]) -> list[Sample]:
    """Per second: the fewest threads and descriptors, the least RSS, the largest history."""
    seconds: dict[int, list[Sample]] = {}
    for s in samples:
        seconds.setdefault(int(s.at), []).append(s)
    return [
        Sample(
            at=float(second),
            rss_kib=min(s.rss_kib for s in group),
            threads=min(s.threads for s in group),
            fds=min(s.fds for s in group),
            history_bytes=max(s.history_bytes for s in group),
        )
        for second, group in sorted(seconds.items())
    ]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.timeout(SECONDS * 2 + 120)
def test_thousands_of_runs_leave_memory_threads_files_and_history_bounded(
    tmp_path: Path, broker: Broker
) -> None:
    rclone = tmp_path / "rclone"
    rclone.write_text(
        STAND_IN.format(
            ok=DATA / "rclone175-copy-json-stats-notice.txt",
            error=DATA / "rclone175-copy-json-nothing-and-error.txt",
        )
    )
    rclone.chmod(0o755)
    jobs = {
        name: {
            "source": str(tmp_path / ("failing" if name in FAILING else "src") / name),
            "destination": str(tmp_path / "dst" / name),
            "schedule": "every 1s",
        }
        for name in (f"j{n:02d}" for n in range(JOBS))
    }
    config = make_config(tmp_path, str(rclone), jobs, broker, max_concurrent_jobs=8)
    config["history_retention"] = {"max_age": "1d", "max_runs": KEEP_RUNS}
    daemon = Daemon(tmp_path, config).start()
    samples: list[Sample] = []
    try:
        daemon.wait_log("serving instance")
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < SECONDS:
            samples.append(sample(daemon.pid, daemon.state_dir, elapsed))
            time.sleep(SAMPLE_EVERY)
        assert daemon.stop() == 0
    finally:
        daemon.close()

    log = daemon.log()
    finished = log.count(" completed in ") + log.count(" failed in ")
    with History(daemon.state_dir) as history:
        kept = {job: len(history.runs(job, 1_000_000)) for job in jobs}
    per_second = floors(samples)
    report = soak_report(per_second, finished)
    print(report)
    # Enough runs that a leak of a few bytes, or of one descriptor, per run would show. An
    # idle machine finishes about 1.4 runs per job and second; a busy one fewer, which is
    # not what this test is about.
    assert finished >= 0.3 * JOBS * SECONDS, report
    assert log.count(" failed in ") >= len(FAILING), "the failing jobs did not fail"

    steady = [s for s in per_second if s.at >= WARM_UP]
    third = len(steady) // 3
    early, late = steady[:third], steady[-third:]

    def median(values: list[Sample], field: str) -> float:
        return statistics.median(getattr(s, field) for s in values)

    rss_growth = median(late, "rss_kib") - median(early, "rss_kib")
    assert rss_growth <= max(3 * 1024, 0.05 * median(early, "rss_kib")), report
    assert median(late, "threads") <= median(early, "threads") + 2, report
    assert median(late, "fds") <= median(early, "fds") + 2, report
    history_growth = max(s.history_bytes for s in late) - max(s.history_bytes for s in early)
    assert history_growth <= 64 * 1024, report
    assert max(kept.values()) <= KEEP_RUNS, f"history_retention did not prune: {kept}"


def soak_report(samples: list[Sample], finished: int) -> str:
    """Every fifth second: what the assertions judged, for the log of a passing run too."""
    step = 5
    rows = [
        f"{s.at:5.1f}s  RSS {s.rss_kib / 1024:6.1f} MiB  threads {s.threads:3d}  "
        f"fds {s.fds:3d}  history {s.history_bytes / 1024:7.1f} KiB"
        for s in samples[::step]
    ]
    return f"{finished} runs finished in {SECONDS:g}s\n" + "\n".join(rows)
