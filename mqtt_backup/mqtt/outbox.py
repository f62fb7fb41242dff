"""What waits to be published: the latest state of each job, and finished-run events.

Pure bookkeeping, no threads and no paho: the publisher's lock guards it. States are
coalesced (only the latest per job waits) and progress is throttled to the configured
interval, while a change that matters (status, phase, error …) is due at once, so a
terminal state is never held back behind progress (docs/design.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from mqtt_backup.jobs.state import JobState
from mqtt_backup.mqtt.message import Message

# Events are not retained: when the broker is away for long, the oldest are dropped.
MAX_PENDING_EVENTS = 64


def significant(state: JobState) -> tuple[object, ...]:
    """What makes a state worth publishing at once; anything else is progress and is throttled."""
    return (
        state.status,
        state.phase,
        state.run_id,
        state.enabled,
        state.next_run_at,
        state.last_result,
        state.error,
        state.name,
        state.deletion.phase,
    )


class StateOutbox:
    """The announced jobs with their latest states, and what of them is still to be sent."""

    def __init__(self, jobs: Iterable[str], progress_interval: float) -> None:
        self.jobs: dict[str, JobState | None] = dict.fromkeys(jobs)
        self._progress_interval = progress_interval
        self._pending: dict[str, JobState] = {}
        self._events: deque[Message] = deque(maxlen=MAX_PENDING_EVENTS)
        self._last_sent: dict[str, tuple[tuple[object, ...], float]] = {}

    def put(self, state: JobState) -> None:
        """The job's newest state: it replaces any state of the job still waiting."""
        self.jobs[state.job_id] = state
        self._pending[state.job_id] = state

    def put_event(self, message: Message) -> None:
        self._events.append(message)

    def replace_jobs(self, states: Mapping[str, JobState], keep: Iterable[str]) -> None:
        """A new job set (a reload): only the jobs in ``keep`` stay announced."""
        kept = set(keep)
        self.jobs = {job: states.get(job) for job in states if job in kept}
        self._pending = {job: s for job, s in self._pending.items() if job in self.jobs}

    @property
    def unsent(self) -> list[str]:
        return sorted(self._pending)

    def due(self, now: float, *, hurry: bool = False) -> tuple[list[str], float | None]:
        """The jobs whose state is due now, and in how many seconds the next one is.

        ``hurry`` (stopping): everything waiting is due, progress included.
        """
        due_now: list[str] = []
        wait: float | None = None
        for job_id, state in self._pending.items():
            last = self._last_sent.get(job_id)
            if hurry or last is None or last[0] != significant(state):
                due_now.append(job_id)
                continue
            due = last[1] + self._progress_interval
            if due <= now:
                due_now.append(job_id)
            else:
                wait = due - now if wait is None else min(wait, due - now)
        return due_now, wait

    def take(self, job_ids: Iterable[str], now: float) -> list[JobState]:
        """The states of ``job_ids`` to send now; they no longer wait."""
        states: list[JobState] = []
        for job_id in job_ids:
            self._pending.pop(job_id, None)
            state = self.jobs.get(job_id)
            if state is None:
                continue
            self._last_sent[job_id] = (significant(state), now)
            states.append(state)
        return states

    def take_events(self) -> list[Message]:
        events = list(self._events)
        self._events.clear()
        return events
