"""The publisher's outbox: the latest state per job, progress throttled, endings at once."""

from __future__ import annotations

from datetime import UTC, datetime

from mqtt_backup.jobs import state as st
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.outbox import MAX_PENDING_EVENTS, StateOutbox

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
INTERVAL = 2.0


def running() -> st.JobState:
    return st.started(st.initial("photos", "Photos"), "run1", "schedule", T0)


def test_only_the_latest_state_of_a_job_waits() -> None:
    outbox = StateOutbox(["photos"], INTERVAL)
    first = running()
    newer = first.model_copy(update={"percent": 40.0})
    outbox.put(first)
    outbox.put(newer)
    due, _ = outbox.due(0.0)
    assert due == ["photos"]
    assert outbox.take(due, 0.0) == [newer]
    assert outbox.unsent == []


def test_progress_waits_for_the_interval_but_a_new_status_does_not() -> None:
    outbox = StateOutbox(["photos"], INTERVAL)
    state = running()
    outbox.put(state)
    outbox.take(outbox.due(0.0)[0], 0.0)

    outbox.put(state.model_copy(update={"percent": 50.0}))
    assert outbox.due(0.5) == ([], INTERVAL - 0.5)
    assert outbox.due(INTERVAL)[0] == ["photos"]

    outbox.put(state.model_copy(update={"status": "completed", "percent": 100.0}))
    assert outbox.due(0.6)[0] == ["photos"], "an ending is never held back behind progress"


def test_stopping_sends_waiting_progress_at_once() -> None:
    outbox = StateOutbox(["photos"], INTERVAL)
    state = running()
    outbox.put(state)
    outbox.take(["photos"], 0.0)
    outbox.put(state.model_copy(update={"percent": 70.0}))
    assert outbox.due(0.1, hurry=True)[0] == ["photos"]


def test_a_reload_drops_removed_jobs_and_their_waiting_states() -> None:
    outbox = StateOutbox(["photos", "music"], INTERVAL)
    photos = running()
    music = st.initial("music", "Music")
    outbox.put(photos)
    outbox.put(music)
    outbox.replace_jobs({"photos": photos, "music": music}, keep=["photos"])
    assert list(outbox.jobs) == ["photos"]
    assert outbox.unsent == ["photos"]


def test_events_are_bounded_and_kept_in_order() -> None:
    outbox = StateOutbox([], INTERVAL)
    for n in range(MAX_PENDING_EVENTS + 10):
        outbox.put_event(Message.text("event", str(n)))
    events = outbox.take_events()
    assert len(events) == MAX_PENDING_EVENTS
    assert events[0].payload == b"10" and events[-1].payload == str(MAX_PENDING_EVENTS + 9).encode()
    assert outbox.take_events() == []
