"""Consumers of job state ("sinks"): the MQTT publisher, the terminal display, and any to come.

The contract (docs/architecture.md, "Sinks"):

- ``run_started(state)`` once when a run begins, ``state_changed(state)`` for each change,
  ``run_finished(state)`` once with the run's terminal state, in that order for a job.
- Each sink is called on a thread of its own, never on rclone's output reader: a sink may
  block (an HTTP call, a disk write) without slowing rclone, the other sinks or the MQTT
  terminal state.
- Progress is coalesced per job: a sink that falls behind sees the latest state of a job,
  not every one in between. ``run_started`` and ``run_finished`` are never coalesced.
- An exception in a sink is logged and that call is skipped; the sink keeps receiving.
"""

from __future__ import annotations

from typing import Protocol

from mqtt_backup.state import JobState


class Sink(Protocol):
    """A consumer of job state; every method may be left as a no-op."""

    def run_started(self, state: JobState) -> None: ...

    def state_changed(self, state: JobState) -> None: ...

    def run_finished(self, state: JobState) -> None: ...
