"""The monitors' HTTP client against a real server on loopback: each answer in a few words."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from mqtt_backup.sinks.monitors.http import Sent, send
from mqtt_backup.sinks.monitors.report import Request
from tests.integration.http_recorder import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder().start()
    yield made
    made.stop()


def test_a_request_arrives_as_built(recorder: Recorder) -> None:
    url = recorder.url("/hc/x/fail?rid=1").replace("http://", "http://me:p%40ss@")
    request = Request("POST", url, (("Content-Type", "text/plain"),), "ä body".encode())
    assert send(request, 5) == Sent(True)
    (got,) = recorder.seen()
    assert (got.method, got.path, got.param("rid"), got.text) == (
        "POST",
        "/hc/x/fail",
        "1",
        "ä body",
    )
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"me:p@ss").decode()
    assert got.headers["user-agent"].startswith("mqtt-backup/")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, Sent(False, "the receiver answered HTTP 404", retry=False)),
        (503, Sent(False, "the receiver answered HTTP 503", retry=True)),
        (429, Sent(False, "the receiver answered HTTP 429", retry=True)),
    ],
)
def test_an_error_answer_says_whether_to_try_again(
    recorder: Recorder, status: int, expected: Sent
) -> None:
    recorder.status = status
    assert send(Request("GET", recorder.url("/p")), 5) == expected


def test_a_receiver_that_is_down_or_silent_is_tried_again(recorder: Recorder) -> None:
    recorder.delay = 3
    assert send(Request("GET", recorder.url("/slow")), 1) == Sent(
        False, "no answer within 1s", retry=True
    )
    recorder.stop()
    assert send(Request("GET", recorder.url("/down")), 1) == Sent(
        False, "connection refused", retry=True
    )
