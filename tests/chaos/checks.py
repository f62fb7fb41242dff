"""What must hold after any chaos; each check returns the violations it found, as sentences."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from mqtt_backup.jobs.history import RunRecord
from tests.integration.serve_helpers import assert_no_overlap, parse_ms

TERMINAL = {"completed", "failed", "cancelled", "interrupted"}


def stuck_runs(runs: dict[str, list[RunRecord]], limit: timedelta) -> list[str]:
    """Runs that are still unfinished, or were unfinished for longer than ``limit``."""
    found = []
    for job, records in runs.items():
        for run in records:
            if run.finished_at is None or run.status not in TERMINAL:
                found.append(f"{job}: run {run.run_id} never finished (status {run.status})")
                continue
            took = parse_ms(run.finished_at) - parse_ms(run.started_at)
            if took > limit:
                found.append(
                    f"{job}: run {run.run_id} was {run.status} only after "
                    f"{took.total_seconds():.1f}s (allowed {limit.total_seconds():.0f}s)"
                    + (f": {run.error}" if run.error else "")
                )
    return found


def overlapping_runs(runs: dict[str, list[RunRecord]]) -> list[str]:
    found = []
    for job, records in runs.items():
        try:
            assert_no_overlap(records)
        except AssertionError as exc:
            found.append(f"{job}: {exc}")
    return found


def retained_mismatches(
    retained: dict[str, dict[str, Any]], runs: dict[str, list[RunRecord]]
) -> list[str]:
    """Each job's retained state must be terminal (or idle) and be its last run's state."""
    found = []
    for job, records in runs.items():
        state = retained.get(job)
        if state is None:
            found.append(f"{job}: no retained state on the broker")
            continue
        status, run_id = state.get("status"), state.get("run_id")
        if status not in TERMINAL | {"idle"}:
            found.append(f"{job}: the retained state stayed {status!r} (run {run_id})")
        if not records:
            continue
        last = records[-1]
        if (run_id, status) != (last.run_id, last.status):
            found.append(
                f"{job}: retained run {run_id} {status!r}, but the history's last run is "
                f"{last.run_id} {last.status!r}"
            )
    return found


def leaked_secrets(places: Iterable[tuple[str, bytes]], secrets: dict[str, str]) -> list[str]:
    """Each secret found verbatim in some place (a message, a log, a file): where, and how often."""
    seen: dict[str, list[str]] = {name: [] for name in secrets}
    for where, data in places:
        for name, value in secrets.items():
            if value.encode() in data:
                seen[name].append(where)
    return [
        f"the {name} appears in {len(wheres)} place(s), first in: " + "; ".join(wheres[:3])
        for name, wheres in seen.items()
        if wheres
    ]


def tracebacks(log: str) -> list[str]:
    """Errors must be one sentence; a traceback in serve's log is an unexpected failure."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        # The line before says what failed; the first unindented line after, with what.
        what = next((t for t in lines[i + 1 :] if t and not t.startswith(" ")), "?")
        found.append(f"serve logged a traceback: {lines[i - 1][:200] if i else ''} -> {what[:200]}")
    return found
