"""Consumers of job state ("sinks"): the MQTT publisher, the terminal display, and any to come.

The contract (docs/architecture.md: ``sinks/`` in "The tree", and "Threads"):

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

from mqtt_backup.jobs.state import JobState


class Sink:
    """A consumer of job state: override what you need, the rest stays a no-op."""

    name = "sink"

    def run_started(self, state: JobState) -> None:
        """A run of ``state.job_id`` began (``state`` is its first running state)."""

    def state_changed(self, state: JobState) -> None:
        """The job's state changed; while a sink is busy, newer states replace waiting ones."""

    def run_finished(self, state: JobState) -> None:
        """The run ended; ``state`` is its terminal state."""
