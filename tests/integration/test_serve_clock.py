"""``serve`` after runs recorded under a clock that was years ahead (a Raspberry Pi without RTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.jobs import state as st
from mqtt_backup.jobs.history import History
from tests.integration.cli_helpers import wait_for
from tests.integration.conftest import Broker
from tests.integration.serve_helpers import Daemon, make_config, make_tree, parse_ms


def test_runs_recorded_years_ahead_do_not_stop_the_schedule(
    tmp_path: Path, rclone_binary: str, mosquitto: Broker
) -> None:
    src = make_tree(tmp_path / "src")
    jobs = {
        job_id: {"source": str(src), "destination": str(tmp_path / job_id), "schedule": "every 6h"}
        for job_id in ("late", "kept")
    }
    jobs["kept"]["catch_up"] = False
    root = tmp_path / "serve"
    root.mkdir()
    d = Daemon(root, make_config(root, rclone_binary, jobs, mosquitto))
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3 * 365)
    with History(d.state_dir) as history:
        for job_id in jobs:
            running = st.started(st.initial(job_id, job_id), f"ahead-{job_id}", "schedule", ahead)
            history.start_run(running)
            history.finish_run(st.finished(running, RunOutcome("completed"), ahead))
    collector = d.collector()
    try:
        d.start()
        # "late" ran at some unknown time: it catches up, so its start can be trusted again.
        late = collector.wait_message(
            d.state_topic("late"),
            lambda m: bool(m.payload) and m.json()["trigger"] == "catch_up"
            and m.json()["status"] == "completed",
            timeout=30,
        ).json()  # fmt: skip
        kept = collector.wait_message(
            d.state_topic("kept"), lambda m: bool(m.payload) and m.json()["next_run_at"]
        ).json()
        for state in (late, kept):
            next_run = parse_ms(state["next_run_at"])
            assert next_run - datetime.now(UTC) <= timedelta(hours=6), state
        # Neither ran on a schedule: the next fires are six hours off.
        assert [r.trigger for r in d.runs("late")] == ["catch_up", "schedule"]
        assert [r.trigger for r in d.runs("kept")] == ["schedule"]
        wait_for(lambda: "ignoring its last start" in d.log(), 10, "the warning")
        assert st.iso(ahead) in d.log()
        assert d.stop() == 0
    finally:
        collector.close()
        d.close()
