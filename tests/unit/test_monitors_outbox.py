"""The outbox: order per receiver, retries with back-off, once per key, across restarts."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mqtt_backup.config.monitors import MonitorDelivery
from mqtt_backup.sinks.monitors.http import Sent
from mqtt_backup.sinks.monitors.outbox import Outbox, backoff
from mqtt_backup.sinks.monitors.report import Request
from mqtt_backup.sinks.monitors.store import Ping

# Retries 50 ms apart at most (the config asks for at least 1s), so the tests stay quick.
FAST = MonitorDelivery.model_construct(
    timeout=timedelta(seconds=1), max_delay=timedelta(milliseconds=50), max_age=timedelta(days=7)
)


class Receivers:
    """Stands in for the network: answers per URL, records what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.answers: dict[str, list[Sent]] = {}
        self.lock = threading.Lock()

    def send(self, request: Request, timeout: float) -> Sent:
        with self.lock:
            self.sent.append(request.url)
            queue = self.answers.get(request.url)
            return queue.pop(0) if queue else Sent(True)

    def fail(self, url: str, times: int, *, retry: bool = True) -> None:
        self.answers[url] = [Sent(False, "connection refused", retry=retry)] * times


def ping(url: str, key: str | None = None, queue: str | None = None) -> Ping:
    return Ping(queue or url.split("/")[2], key or url, f"the ping {url}", Request("POST", url))


def attempts(box: Outbox) -> int:
    with sqlite3.connect(box.path) as db:
        return int(db.execute("SELECT MAX(attempts) FROM pings").fetchone()[0] or 0)


def wait_until(check: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def receivers() -> Receivers:
    return Receivers()


@pytest.fixture
def outboxes(tmp_path: Path, receivers: Receivers) -> Iterator[Callable[..., Outbox]]:
    made: list[Outbox] = []

    def make(settings: MonitorDelivery = FAST, **kw: object) -> Outbox:
        box = Outbox(tmp_path, lambda: settings, sender=receivers.send, **kw).open()  # type: ignore[arg-type]
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop()


def test_pings_of_one_receiver_go_out_in_order_and_a_failing_one_holds_up_only_its_own(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    receivers.fail("http://a/start", 2)
    box = outboxes()
    for url in ("http://a/start", "http://a/fail", "http://b/start", "http://b/fail"):
        box.put(ping(url))
    box.start()
    assert box.flush(15)
    sent = receivers.sent
    assert sent.count("http://a/start") == 3 and sent.count("http://a/fail") == 1
    # b did not wait for a's retries; a's fail never overtook its start.
    assert sent.index("http://b/fail") < sent.index("http://a/fail")
    assert sent.index("http://a/fail") > max(i for i, u in enumerate(sent) if u == "http://a/start")
    assert box.waiting() == 0


def test_a_ping_put_twice_is_sent_once_even_after_it_was_delivered(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    box = outboxes()
    box.start()
    assert box.put(ping("http://a/fail", key="k"))
    assert not box.put(ping("http://a/fail", key="k"))
    assert box.flush(5)
    assert not box.put(ping("http://a/fail", key="k"))
    time.sleep(0.2)
    assert receivers.sent == ["http://a/fail"]


def test_pings_left_by_a_process_are_sent_by_the_next_one_once(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    first = outboxes()
    first.put(ping("http://a/start"))
    first.put(ping("http://a/fail"))
    first.stop()  # never started: like a run-job whose receiver was down until it exited
    second = outboxes()
    assert second.waiting() == 2
    second.start()
    wait_until(lambda: second.waiting() == 0)
    assert receivers.sent == ["http://a/start", "http://a/fail"]


def test_two_processes_on_one_outbox_send_each_ping_once(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    one, two = outboxes(), outboxes()
    urls = [f"http://r{n % 5}/p{n}" for n in range(60)]
    one.start()
    two.start()
    for n, url in enumerate(urls):
        (one if n % 2 else two).put(ping(url))
    wait_until(lambda: one.waiting() == 0, 20)
    assert sorted(receivers.sent) == sorted(urls)


def test_a_refused_ping_is_dropped_with_a_warning_and_the_next_goes_out(
    outboxes: Callable[..., Outbox], receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    receivers.answers["http://a/start"] = [Sent(False, "the receiver answered HTTP 404")]
    box = outboxes()
    box.put(ping("http://a/start"))
    box.put(ping("http://a/fail"))
    with caplog.at_level(logging.WARNING):
        box.start()
        assert box.flush(5)
    assert receivers.sent == ["http://a/start", "http://a/fail"]
    assert "the ping http://a/start was refused: the receiver answered HTTP 404" in caplog.text


def test_the_first_failure_is_logged_once_and_the_delivery_after_it(
    outboxes: Callable[..., Outbox], receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    receivers.fail("http://a/fail", 3)
    box = outboxes()
    with caplog.at_level(logging.INFO):
        box.start()
        box.put(ping("http://a/fail"))
        assert box.flush(15)
    assert caplog.text.count("could not be delivered: connection refused") == 1
    assert "the ping http://a/fail delivered after 4 attempts" in caplog.text


def test_a_ping_older_than_max_age_is_dropped_with_a_line_saying_so(
    outboxes: Callable[..., Outbox], receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1_000_000.0]
    receivers.fail("http://a/fail", 1000)
    box = outboxes(clock=lambda: now[0], poll=0.05)
    box.put(ping("http://a/fail"))
    with caplog.at_level(logging.WARNING):
        box.start()
        wait_until(lambda: len(receivers.sent) == 1)
        now[0] += 7 * 86400 + 1
        wait_until(lambda: "was dropped" in caplog.text)
    assert box.waiting() == 0
    assert "the ping http://a/fail was dropped: not delivered within 7d" in caplog.text
    assert "last: connection refused" in caplog.text


def test_flush_gives_up_in_time_and_leaves_the_ping_waiting(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    receivers.fail("http://a/fail", 1000)
    box = outboxes()
    box.start()
    box.put(ping("http://a/fail"))
    started = time.monotonic()
    assert not box.flush(1.0)
    assert time.monotonic() - started < 2.5
    assert box.waiting() == 1


def test_a_retry_time_far_ahead_of_the_clock_counts_as_due(
    outboxes: Callable[..., Outbox], receivers: Receivers
) -> None:
    now = [2_000_000.0]
    receivers.fail("http://a/fail", 1)
    box = outboxes(clock=lambda: now[0], poll=0.05)
    box.put(ping("http://a/fail"))
    box.start()
    wait_until(lambda: attempts(box) == 1)
    now[0] -= 86400  # the clock was set back a day: the retry is not a day away
    wait_until(lambda: box.waiting() == 0, 5)


def test_delivered_pings_keep_no_url_or_body(outboxes: Callable[..., Outbox]) -> None:
    box = outboxes()
    box.put(Ping("q", "k", "l", Request("POST", "http://h/TOKEN", (("A", "B"),), b"body")))
    box.start()
    assert box.flush(5)
    box.stop()
    with sqlite3.connect(box.path) as db:
        assert db.execute("SELECT url, headers, body, done FROM pings").fetchall() == [
            ("", "[]", None, "delivered")
        ]
    assert box.path.stat().st_mode & 0o077 == 0


def test_backoff_doubles_to_the_limit_and_is_shortened_at_random() -> None:
    assert [backoff(n, 300, lambda: 1.0) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff(20, 300, lambda: 1.0) == 300
    assert backoff(1, 300, lambda: 0.0) == 1
    assert backoff(1000, 60, lambda: 0.5) == 45


def test_a_damaged_outbox_is_moved_aside_and_a_new_one_used(
    tmp_path: Path, receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "outbox.sqlite3").write_bytes(b"not a database at all" * 100)
    with caplog.at_level(logging.ERROR):
        box = Outbox(tmp_path, lambda: FAST, sender=receivers.send).open()
    try:
        assert "the monitors' outbox" in caplog.text and "is damaged" in caplog.text
        assert [p.name for p in tmp_path.glob("outbox.sqlite3.corrupt-*")]
        box.start()
        box.put(ping("http://a/fail"))
        assert box.flush(5)
    finally:
        box.stop()
    assert receivers.sent == ["http://a/fail"]
