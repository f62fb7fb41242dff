"""The generated dashboard names only entities discovery creates, and its tables render."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from mqtt_backup.cli import main
from mqtt_backup.homeassistant.dashboard import DashboardError, dashboard_view, render, select_jobs
from mqtt_backup.homeassistant.discovery import discovery_messages

JOBS = {
    "photos": {"name": "Photos", "source": "/a", "destination": "nas:a", "schedule": "0 3 * * *"},
    "camera-uploads": {"name": "Phone <camera> {uploads}", "source": "/b", "destination": "nas:b",
                       "schedule": "every 6h", "deletion": {"mode": "verify_then_delete"}},
    "manual": {"source": "/c", "destination": "nas:c"},
}  # fmt: skip
ENTITY_ID = re.compile(r"\b(?:sensor|binary_sensor|switch|button|event)\.[a-z0-9_]+")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config(make_config: Any) -> Any:
    return make_config({"instance": "lab", "mqtt": {}, "jobs": JOBS})


def discovered_ids(config: Any) -> set[str]:
    """The entity ids the discovery messages ask Home Assistant for, read from the payloads."""
    ids = set()
    for job in config.jobs:
        for message in discovery_messages(config, job):
            payload = json.loads(message.payload)
            for component in payload["cmps"].values():
                domain, object_id = component["default_entity_id"].split(".")
                assert domain == component["p"] and object_id == component["object_id"]
                ids.add(component["default_entity_id"])
    return ids


def named_ids(view: dict[str, Any]) -> set[str]:
    return set(ENTITY_ID.findall(render(view)))


def test_every_entity_the_view_names_is_one_discovery_creates(config: Any) -> None:
    view = dashboard_view(config, list(config.jobs))
    named = named_ids(view)
    assert named <= discovered_ids(config)
    # Each job is in it: the overview row and its own section.
    for prefix in ("backup_photos_", "backup_camera_uploads_", "backup_manual_"):
        assert f"sensor.{prefix}status" in named
        assert f"button.{prefix}run_now" in named


def test_the_yaml_is_a_sections_view_that_reads_back(config: Any) -> None:
    text = render(dashboard_view(config, list(config.jobs)))
    view = yaml.safe_load(text)
    assert view["type"] == "sections" and view["path"] == "backups"
    overview, *jobs = view["sections"]
    assert overview["column_span"] == view["max_columns"]
    headings = [section["cards"][0]["heading"] for section in jobs]
    assert headings == ["Photos", "Phone <camera> {uploads}", "manual"]


def test_renaming_a_job_changes_no_entity_id(make_config: Any, config: Any) -> None:
    renamed = make_config(
        {"instance": "lab", "mqtt": {}, "jobs": JOBS | {"photos": JOBS["photos"] | {"name": "X"}}}
    )
    before = named_ids(dashboard_view(config, ["photos"]))
    assert named_ids(dashboard_view(renamed, ["photos"])) == before


def test_without_commands_no_buttons_or_switch(make_config: Any) -> None:
    config = make_config({"instance": "lab", "mqtt": {"allow_commands": False}, "jobs": JOBS})
    named = named_ids(dashboard_view(config, list(config.jobs)))
    assert named <= discovered_ids(config)
    assert not any(i.startswith(("button.", "switch.")) for i in named)


def test_space_freed_only_for_jobs_that_delete(config: Any) -> None:
    named = named_ids(dashboard_view(config, list(config.jobs)))
    assert "sensor.backup_camera_uploads_space_freed" in named
    assert "sensor.backup_photos_space_freed" not in named


def test_no_mqtt_or_no_discovery_is_an_error(make_config: Any) -> None:
    with pytest.raises(DashboardError, match="no mqtt: section"):
        dashboard_view(make_config({"jobs": JOBS}), ["photos"])
    with pytest.raises(DashboardError, match="discovery is off"):
        dashboard_view(make_config({"mqtt": {"discovery": False}, "jobs": JOBS}), ["photos"])


def test_select_jobs(config: Any) -> None:
    assert select_jobs(config, None) == ["photos", "camera-uploads", "manual"]
    assert select_jobs(config, "manual, photos,manual") == ["manual", "photos"]
    with pytest.raises(DashboardError, match=r"unknown job\(s\) nope \(jobs: photos, "):
        select_jobs(config, "photos,nope")


# The markdown card's template, rendered the way Home Assistant renders it.


def render_template(template: str, states: dict[str, str]) -> str:
    def as_datetime(value: str) -> datetime:
        return datetime.fromisoformat(value)

    def words(delta: timedelta) -> str:
        return f"{round(abs(delta).total_seconds() / 3600)} hours"

    env = jinja2.Environment(autoescape=False)  # noqa: S701 - renders test data only
    env.filters["as_datetime"] = as_datetime
    env.globals |= {
        "states": lambda e: states.get(e, "unknown"),
        "is_state": lambda e, s: states.get(e) == s,
        "has_value": lambda e: states.get(e, "unknown") not in ("unknown", "unavailable"),
        "now": lambda: NOW,
        "time_since": lambda t: words(NOW - t),
        "time_until": lambda t: words(t - NOW),
    }
    return env.from_string(template).render()


def overview_html(config: Any, states: dict[str, str]) -> list[str]:
    view = dashboard_view(config, list(config.jobs))
    [markdown] = [c for c in view["sections"][0]["cards"] if c["type"] == "markdown"]
    return render_template(markdown["content"], states).strip().splitlines()


def test_the_overview_is_a_table_of_one_line_per_job(config: Any) -> None:
    lines = overview_html(config, {})
    assert lines[0] == '<table width="100%">' and lines[-1] == "</table>"
    rows = lines[2:-1]
    assert len(rows) == 3 and all(r.startswith("<tr><td>") and r.endswith("</tr>") for r in rows)
    assert "<td>Phone &lt;camera&gt; &#123;uploads&#125;</td>" in rows[1]
    # Never run: no success, nothing known yet; a manual job has no next run.
    assert "<td>never</td><td>—</td>" in rows[0]
    assert "<td>never</td><td>manual</td>" in rows[2]


def test_the_overview_reads_states_and_unknown_statuses(config: Any) -> None:
    states = {
        "sensor.backup_photos_status": "running",
        "sensor.backup_photos_progress": "42.4",
        "sensor.backup_photos_last_success": (NOW - timedelta(hours=7)).isoformat(),
        "sensor.backup_photos_next_run": (NOW + timedelta(hours=15)).isoformat(),
        "switch.backup_photos_schedule_enabled": "on",
        "sensor.backup_camera_uploads_status": "rebalancing",  # a status added later
        "sensor.backup_camera_uploads_next_run": (NOW + timedelta(hours=1)).isoformat(),
        "switch.backup_camera_uploads_schedule_enabled": "off",
        "binary_sensor.backup_camera_uploads_problem": "on",
        "binary_sensor.backup_camera_uploads_overdue": "on",
        "sensor.backup_manual_status": "skipped",
    }
    photos, camera, manual = overview_html(config, states)[2:-1]
    assert "running 42 %</td>" in photos and "mdi:progress-upload" in photos
    assert "<td>7 hours ago</td><td>in 15 hours</td>" in photos and "OK</td>" in photos
    assert "mdi:help-circle" in camera and "</font> rebalancing</td>" in camera
    assert "<td>paused</td>" in camera
    assert "problem, " in camera and "overdue</td>" in camera
    assert "mdi:skip-next-circle" in manual and "skipped</td>" in manual


def test_the_overview_names_the_hook_that_runs(config: Any) -> None:
    states = {
        "sensor.backup_photos_status": "running",
        "sensor.backup_photos_phase": "before_hook",
        "sensor.backup_photos_progress": "0",
        "sensor.backup_camera_uploads_status": "running",
        "sensor.backup_camera_uploads_phase": "after_hook",
        "sensor.backup_manual_status": "running",
        "sensor.backup_manual_phase": "transferring",
        "sensor.backup_manual_progress": "12",
    }
    photos, camera, manual = overview_html(config, states)[2:-1]
    assert "</font> running (before hook)</td>" in photos
    assert "</font> running (after hook)</td>" in camera
    assert "</font> running 12 %</td>" in manual


def test_each_job_shows_its_phase_while_it_runs(config: Any) -> None:
    view = dashboard_view(config, ["photos"])
    rows = view["sections"][1]["cards"][1]["entities"]
    phase_rows = [r for r in rows if r.get("row", {}).get("entity") == "sensor.backup_photos_phase"]
    assert phase_rows == [
        {
            "type": "conditional",
            "conditions": [{"entity": "sensor.backup_photos_status", "state": "running"}],
            "row": {"entity": "sensor.backup_photos_phase", "name": "Phase"},
        }
    ]


def test_sizes_in_readable_units(config: Any) -> None:
    view = dashboard_view(config, ["camera-uploads"])
    sizes = [c for c in view["sections"][1]["cards"] if c["type"] == "markdown"][0]
    states = {
        "sensor.backup_camera_uploads_transferred": "1843200000",
        "sensor.backup_camera_uploads_space_freed": "999",
        "sensor.backup_camera_uploads_files_deleted": "57",
    }
    text = render_template(sizes["content"], states)
    assert "Transferred: **1.8 GB**" in text
    assert "Space freed: **999 B** (57 files deleted)" in text
    assert "Transferred: **—**" in render_template(sizes["content"], {})


def test_cli_prints_the_view_and_refuses_unknown_jobs(tmp_path: Any, capsys: Any) -> None:
    path = tmp_path / "mqtt-backup.yaml"
    path.write_text(yaml.safe_dump({"instance": "lab", "mqtt": {}, "jobs": JOBS}))
    assert main(["-c", str(path), "dashboard", "--jobs", "photos"]) == 0
    view = yaml.safe_load(capsys.readouterr().out)
    assert [s["cards"][0]["heading"] for s in view["sections"][1:]] == ["Photos"]
    assert main(["-c", str(path), "dashboard", "--jobs", "nope"]) == 2
    assert "unknown job(s) nope" in capsys.readouterr().err


def test_the_shipped_dashboard_is_the_one_the_command_makes(capsys: Any) -> None:
    root = Path(__file__).resolve().parents[2]
    assert main(["-c", str(root / "config" / "example.yaml"), "dashboard"]) == 0
    made = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load((root / "config" / "home-assistant-dashboard.yaml").read_text())
    assert shipped == made
