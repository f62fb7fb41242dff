"""Hands each state change to every sink through a mailbox and a thread of its own."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from mqtt_backup.jobs.state import JobState
from mqtt_backup.sinks import Sink

logger = logging.getLogger(__name__)

Kind = Literal["run_started", "state_changed", "run_finished"]

# Run events are never merged; past this many waiting for one sink, the oldest are dropped
# (with a warning) rather than letting a stuck sink grow the daemon's memory forever.
MAX_WAITING = 10_000


@dataclass(slots=True)
class _Letter:
    kind: Kind
    state: JobState


class _Mailbox:
    """One sink's queue and thread. ``post`` never blocks the caller."""

    def __init__(self, sink: Sink, name: str) -> None:
        self.sink = sink
        self.name = name
        self._letters: deque[_Letter] = deque()
        # The waiting state_changed of each job, so a newer state replaces it in place.
        self._latest: dict[str, _Letter] = {}
        self._ready = threading.Condition()
        self._busy = False
        self._closed = False
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def post(self, kind: Kind, state: JobState) -> None:
        with self._ready:
            if self._closed:
                return
            if kind == "state_changed":
                waiting = self._latest.get(state.job_id)
                if waiting is not None:
                    waiting.state = state
                    return
                letter = _Letter(kind, state)
                self._latest[state.job_id] = letter
            else:
                # Later states of this job must come after this event, not merge before it.
                self._latest.pop(state.job_id, None)
                letter = _Letter(kind, state)
                if len(self._letters) >= MAX_WAITING:
                    self._drop_oldest()
            self._letters.append(letter)
            self._ready.notify()

    def _drop_oldest(self) -> None:
        old = self._letters.popleft()
        if self._latest.get(old.state.job_id) is old:
            del self._latest[old.state.job_id]
        self._dropped += 1
        if self._dropped in (1, 100, 10_000):
            logger.warning("sink %s is stuck: %d state updates dropped", self.name, self._dropped)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._letters and not self._closed:
                    self._busy = False
                    self._ready.notify_all()
                    self._ready.wait()
                if not self._letters:
                    self._busy = False
                    self._ready.notify_all()
                    return
                letter = self._letters.popleft()
                if self._latest.get(letter.state.job_id) is letter:
                    del self._latest[letter.state.job_id]
                self._busy = True
            self._deliver(letter)

    def _deliver(self, letter: _Letter) -> None:
        method = getattr(self.sink, letter.kind, None)
        if method is None:
            return
        try:
            method(letter.state)
        except Exception:  # one sink's failure must reach neither the run nor the other sinks
            logger.exception(
                "sink %s failed on %s of job %s", self.name, letter.kind, letter.state.job_id
            )

    def drain(self, deadline: float) -> bool:
        """Wait until everything posted so far was delivered; False when time ran out."""
        with self._ready:
            while self._letters or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._ready.wait(remaining)
            return True

    def close(self, deadline: float) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))


class FanOut:
    """Every sink gets every state, on its own thread; calls here return at once."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self._boxes: list[_Mailbox] = []
        self._lock = threading.Lock()
        for sink in sinks or []:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        name = getattr(sink, "name", None) or type(sink).__name__
        with self._lock:
            self._boxes.append(_Mailbox(sink, str(name)))

    def _post(self, kind: Kind, state: JobState) -> None:
        with self._lock:
            boxes = list(self._boxes)
        for box in boxes:
            box.post(kind, state)

    def run_started(self, state: JobState) -> None:
        self._post("run_started", state)

    def state_changed(self, state: JobState) -> None:
        self._post("state_changed", state)

    def run_finished(self, state: JobState) -> None:
        self._post("run_finished", state)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait for every sink to take what was posted; False if one did not in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            boxes = list(self._boxes)
        done = True
        for box in boxes:
            if not box.drain(deadline):
                logger.warning("sink %s did not take its last state updates in time", box.name)
                done = False
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is waiting (for at most ``timeout``), then stop every thread."""
        self.drain(timeout)
        deadline = time.monotonic() + 0.5
        with self._lock:
            boxes, self._boxes = self._boxes, []
        for box in boxes:
            box.close(deadline)
