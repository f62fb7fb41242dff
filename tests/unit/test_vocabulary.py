"""One vocabulary of statuses and phases: every list elsewhere covers what jobs/state.py holds."""

from __future__ import annotations

import io
from typing import Any, get_args

import pytest

from mqtt_backup import metrics
from mqtt_backup.engine import events
from mqtt_backup.homeassistant import dashboard, discovery
from mqtt_backup.jobs import state as st
from mqtt_backup.sinks.terminal import ProgressDisplay, summary


def test_the_engines_endings_and_phases_are_part_of_the_state_vocabulary() -> None:
    assert set(get_args(events.Status)) <= set(st.STATUSES)
    assert set(get_args(events.Phase)) <= set(st.PHASES)
    assert set(st.HOOK_PHASES) == set(get_args(events.HookKind))
    assert set(st.HOOK_PHASES.values()) <= set(st.PHASES)
    # How a run ends, skipped included, is terminal; idle, queued and running are not.
    assert set(get_args(events.Status)) | {"interrupted"} == st.TERMINAL
    assert "skipped" in st.TERMINAL
    assert {"queued", "running"} == st.ACTIVE
    assert set(st.STATUSES) == st.TERMINAL | st.ACTIVE | {"idle"}
    assert set(st.PROBLEMS) <= st.TERMINAL and "skipped" not in st.PROBLEMS


def test_every_status_is_a_home_assistant_option_with_an_icon_and_colour() -> None:
    assert list(st.STATUSES) == discovery.STATUS_OPTIONS
    assert set(st.STATUSES) <= set(dashboard.STATUS_LOOK)
    for status in st.STATUSES:
        icon, colour = dashboard.STATUS_LOOK[status]
        assert icon.startswith("mdi:") and colour.startswith("#"), status


def test_every_ending_has_a_last_run_status_series() -> None:
    assert set(metrics.LAST_STATUSES) == st.TERMINAL


def test_every_ending_is_an_event_type() -> None:
    assert set(discovery.EVENT_TYPES) == st.TERMINAL
    # In the order of the status options, for a stable discovery payload.
    assert [s for s in discovery.STATUS_OPTIONS if s in st.TERMINAL] == discovery.EVENT_TYPES


def test_every_phase_is_an_option_and_has_a_label() -> None:
    assert list(st.PHASES) == discovery.PHASE_OPTIONS
    assert set(st.PHASE_LABELS) == set(st.PHASES)
    assert all(label.strip() for label in st.PHASE_LABELS.values())


@pytest.mark.parametrize("phase", st.PHASES)
def test_the_terminal_draws_every_phase(phase: str) -> None:
    class Bar:
        def __init__(self) -> None:
            self.fields: dict[str, Any] = {}

        def add_task(self, _description: str, **fields: Any) -> int:
            self.fields = fields
            return 1

        def update(self, _task: int, **fields: Any) -> None:
            self.fields = fields

    state = st.JobState.model_validate(
        {"job_id": "photos", "name": "Photos", "status": "running", "phase": phase}
    )
    bar = Bar()
    ProgressDisplay(io.StringIO(), live=False)._draw(bar, state)  # type: ignore[arg-type]
    assert bar.fields["phase"] == st.PHASE_LABELS[state.phase]  # type: ignore[index]


@pytest.mark.parametrize("status", sorted(st.TERMINAL))
def test_every_ending_has_a_summary_line(status: str) -> None:
    state = st.JobState.model_validate(
        {"job_id": "photos", "name": "Photos", "status": status, "error": "why"}
    )
    line = summary(state)
    assert line.startswith(f"photos: {status}") and line.endswith("— why")
