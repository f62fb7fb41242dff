"""The command inbox: nothing dropped for lack of room, repeats coalesced and logged."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from mqtt_backup.mqtt.command_inbox import CommandInbox


class Gate:
    """A handler that holds the first command until released, so the others must wait."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, str, bytes]] = []
        self.release = threading.Event()
        self.first = threading.Event()
        self.done = threading.Condition()

    def __call__(self, job_id: str, command: str, payload: bytes) -> None:
        self.first.set()
        self.release.wait(5)
        with self.done:
            self.handled.append((job_id, command, payload))
            self.done.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, str, bytes]]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.handled) >= count, 5)
            return list(self.handled)


@pytest.fixture
def gate() -> Gate:
    return Gate()


def test_a_thousand_waiting_commands_are_all_handled_in_order(gate: Gate) -> None:
    inbox = CommandInbox(gate)
    inbox.start()
    inbox.offer("first", "run", b"")
    assert gate.first.wait(5)
    for n in range(1000):
        inbox.offer(f"j{n}", "run", b"")
    assert inbox.waiting() == 1000
    gate.release.set()
    handled = gate.wait_for(1001)
    assert [h[0] for h in handled] == ["first"] + [f"j{n}" for n in range(1000)]
    inbox.stop(5)


def test_a_repeated_command_still_waiting_is_coalesced_and_logged(
    gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = CommandInbox(gate)
    inbox.start()
    inbox.offer("busy", "run", b"")
    assert gate.first.wait(5)
    inbox.offer("a", "run", b"PRESS")
    inbox.offer("a", "enabled/set", b"OFF")
    inbox.offer("a", "run", b"PRESS")
    inbox.offer("a", "enabled/set", b"ON")
    inbox.offer("a", "cancel", b"")
    gate.release.set()
    handled = gate.wait_for(4)
    assert handled[1:] == [
        ("a", "run", b"PRESS"),
        ("a", "enabled/set", b"ON"),
        ("a", "cancel", b""),
    ]
    assert "job a: run command coalesced: the same command is still waiting" in caplog.text
    inbox.stop(5)
    # Once handed over, the same command is a new request again.
    inbox.start()
    inbox.offer("a", "run", b"")
    assert gate.wait_for(5)[-1] == ("a", "run", b"")
    inbox.stop(5)


def test_a_failing_command_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[str] = []
    done = threading.Event()

    def handler(job_id: str, command: str, payload: bytes) -> None:
        if job_id == "bad":
            raise RuntimeError("boom")
        handled.append(job_id)
        done.set()

    inbox = CommandInbox(handler)
    with caplog.at_level(logging.ERROR, logger="mqtt_backup.mqtt.command_inbox"):
        inbox.start()
        inbox.offer("bad", "run", b"")
        inbox.offer("good", "run", b"")
        assert done.wait(5)
        inbox.stop(5)
    assert handled == ["good"]
    (record,) = caplog.records
    assert record.getMessage() == "handling command 'run' for job 'bad' failed"
    assert record.exc_info is not None


def test_stop_hands_on_no_waiting_command_and_says_how_many(
    gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = CommandInbox(gate)
    inbox.start()
    inbox.offer("busy", "run", b"")
    assert gate.first.wait(5)
    inbox.offer("a", "run", b"")
    inbox.offer("b", "cancel", b"")
    # Not waiting for the busy handler: the thread is told to end after it, and nothing else.
    inbox.stop(0)
    gate.release.set()
    deadline = time.monotonic() + 5
    while inbox.waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inbox.waiting() == 0
    assert gate.handled == [("busy", "run", b"")]
    assert "shutting down: 2 waiting commands not handled" in caplog.text


def test_starting_twice_runs_one_command_thread(gate: Gate) -> None:
    inbox = CommandInbox(gate)
    inbox.start()
    inbox.start()
    gate.release.set()
    inbox.offer("a", "run", b"")
    gate.wait_for(1)
    names = [t.name for t in threading.enumerate() if t.name == "mqtt-backup-commands"]
    inbox.stop(5)
    assert names == ["mqtt-backup-commands"]
