"""What each monitor kind is sent for a run's start and end (pure: no network)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mqtt_backup.config.loader import parse_config
from mqtt_backup.config.models import AppConfig
from mqtt_backup.config.monitors import (
    HealthchecksMonitor,
    NtfyMonitor,
    UptimeKumaMonitor,
    WebhookMonitor,
)
from mqtt_backup.jobs.state import JobState
from mqtt_backup.sinks.monitors import healthchecks, ntfy, uptime_kuma, webhook
from mqtt_backup.sinks.monitors.http import answered
from mqtt_backup.sinks.monitors.report import Report, ending_of, split_credentials
from mqtt_backup.sinks.monitors.sink import MonitorSink, pings

NOW = datetime(2026, 3, 1, 3, 0, 5, tzinfo=UTC)


def state(status: str = "failed", **extra: Any) -> JobState:
    values: dict[str, Any] = {
        "job_id": "photos",
        "name": "Photos",
        "status": status,
        "run_id": "a1b2c3d4e5f6",
        "trigger": "schedule",
        "started_at": NOW - timedelta(seconds=5),
        "finished_at": NOW,
        "duration_seconds": 5.0,
        "error": "rclone could not reach the destination: connection refused",
        "exit_code": 5,
        "log_tail": ("NOTICE: a.jpg: retrying", "ERROR: b.jpg: connection refused"),
    }
    return JobState.model_validate(values | extra)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


HC = HealthchecksMonitor(url="https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/{job}?create=1")


@pytest.mark.parametrize(
    ("ending", "extra", "path"),
    [
        ("started", {}, "/photos/start"),
        ("completed", {"status": "completed", "error": None, "exit_code": 0}, "/photos"),
        ("failed", {}, "/photos/5"),
        ("failed", {"exit_code": None}, "/photos/fail"),
        ("failed", {"exit_code": -9}, "/photos/fail"),
        ("warning", {"status": "completed", "exit_code": 0}, "/photos/fail"),
        ("interrupted", {"status": "interrupted", "exit_code": None}, "/photos/fail"),
        ("cancelled", {"status": "cancelled", "exit_code": 130}, "/photos/log"),
        ("skipped", {}, "/photos/log"),
        ("timed_out", {}, "/photos/log"),
    ],
)
def test_healthchecks_gets_start_success_fail_or_log(
    ending: str, extra: dict[str, Any], path: str
) -> None:
    request = healthchecks.request(HC, Report(ending, state(**extra)))
    parts = urlsplit(request.url)
    assert request.method == "POST"
    assert parts.path == f"/PK4r7Yt2Qw8Zx1Vb6Nm3Lk{path}"
    assert query(request.url) == {"create": ["1"], "rid": [healthchecks.run_uuid("a1b2c3d4e5f6")]}


def test_a_runs_start_and_end_carry_the_same_run_id_and_another_run_another() -> None:
    start = healthchecks.request(HC, Report("started", state("running")))
    end = healthchecks.request(HC, Report("failed", state()))
    other = healthchecks.request(HC, Report("failed", state(run_id="ffffffffffff")))
    assert query(start.url)["rid"] == query(end.url)["rid"] != query(other.url)["rid"]


def test_the_body_says_what_failed_with_rclones_last_lines() -> None:
    body = healthchecks.request(HC, Report("failed", state())).body
    assert body is not None
    assert body.decode() == (
        "photos: failed in 5.0s — 0 files, 0 B — rclone could not reach the destination: "
        "connection refused\n"
        "rclone exit status 5\n"
        "\n"
        "rclone's last log lines:\n"
        "NOTICE: a.jpg: retrying\n"
        "ERROR: b.jpg: connection refused"
    )


def test_a_long_log_loses_its_oldest_lines_first_and_the_body_stays_in_bounds() -> None:
    tail = tuple(f"ERROR: file{n:05d}.jpg: connection refused " + "é" * 100 for n in range(500))
    body = Report("failed", state(log_tail=tail)).text(healthchecks.MAX_BODY)
    assert len(body.encode()) <= healthchecks.MAX_BODY
    assert body.startswith("photos: failed in 5.0s")
    assert body.endswith(tail[-1]) and tail[0] not in body
    huge = Report("failed", state(error="x" * 50_000, log_tail=())).text(1000)
    assert len(huge.encode()) <= 1000 and huge.endswith("…")


def test_uptime_kuma_gets_up_or_down_with_the_pasted_query_replaced() -> None:
    kuma = UptimeKumaMonitor(url="https://kuma.lan/api/push/Xk3pQ9vB2m?status=up&msg=OK&ping=")
    up = uptime_kuma.request(kuma, Report("completed", state("completed", error=None, exit_code=0)))
    down = uptime_kuma.request(kuma, Report("failed", state()))
    assert up is not None and down is not None
    assert up.method == down.method == "GET"
    assert urlsplit(up.url).path == "/api/push/Xk3pQ9vB2m"
    assert query(up.url) == {
        "status": ["up"],
        "msg": ["photos: completed in 5.0s — 0 files, 0 B"],
        "ping": [""],
    }
    assert query(down.url)["status"] == ["down"]
    assert "connection refused" in query(down.url)["msg"][0]
    for ending in ("started", "cancelled", "skipped"):
        assert uptime_kuma.request(kuma, Report(ending, state())) is None


def test_ntfy_gets_a_title_priority_and_tags_by_how_the_run_ended() -> None:
    topic = NtfyMonitor(url="https://ntfy.sh/backups-7d1f", token="tk_abcdefghij1234")  # type: ignore[arg-type]
    failed = ntfy.request(topic, Report("failed", state(name="Fotos ✓")))
    assert urlsplit(failed.url).path == "/backups-7d1f"
    assert query(failed.url) == {
        "title": ["Backup Fotos ✓ failed"],
        "priority": ["4"],
        "tags": ["rotating_light,backup"],
    }
    assert ("Authorization", "Bearer tk_abcdefghij1234") in failed.headers
    assert failed.body is not None and b"rclone exit status 5" in failed.body
    done = ntfy.request(topic, Report("completed", state("completed", error=None)))
    assert query(done.url)["priority"] == ["2"]
    fixed = NtfyMonitor(url="https://ntfy.sh/backups-7d1f", priority=5)
    assert query(ntfy.request(fixed, Report("completed", state("completed"))).url)["priority"] == [
        "5"
    ]


def test_a_webhook_gets_the_state_payload_and_what_a_notification_needs() -> None:
    hook = WebhookMonitor(url="https://n8n.lan/webhook/backup", headers={"X-Key": "k"})
    request = webhook.request(hook, Report("failed", state()))
    sent = json.loads(request.body or b"")
    assert json.loads(state().to_json()).items() <= sent.items()
    assert sent["ending"] == "failed"
    assert sent["title"] == "Backup Photos failed"
    assert sent["exit_code"] == 5
    assert sent["log_tail"] == ["NOTICE: a.jpg: retrying", "ERROR: b.jpg: connection refused"]
    assert dict(request.headers) == {"Content-Type": "application/json", "X-Key": "k"}


def test_a_webhook_body_of_your_own_is_filled_in() -> None:
    hook = WebhookMonitor(
        url="https://gotify.lan/message?token=AbC.dEf-12",
        body={
            "title": "{title}",
            "message": "{message}\n{log}",
            "priority": 8,
            "extras": ["{job}"],
        },
    )
    sent = json.loads(webhook.request(hook, Report("failed", state())).body or b"")
    assert sent == {
        "title": "Backup Photos failed",
        "message": "photos: failed in 5.0s — 0 files, 0 B — rclone could not reach the "
        "destination: connection refused\n"
        "NOTICE: a.jpg: retrying\nERROR: b.jpg: connection refused",
        "priority": 8,
        "extras": ["photos"],
    }


def test_a_completed_run_with_a_warning_is_its_own_ending() -> None:
    assert ending_of(state("completed", error="2 files differ at the destination")) == "warning"
    assert ending_of(state("completed", error=None)) == "completed"
    assert ending_of(state("cancelled")) == "cancelled"


def test_credentials_in_a_url_become_a_basic_authorization_header() -> None:
    url, headers = split_credentials("https://me:p%40ss@ntfy.lan:8443/alerts?x=1")
    assert url == "https://ntfy.lan:8443/alerts?x=1"
    token = base64.b64encode(b"me:p@ss").decode()
    assert headers == (("Authorization", f"Basic {token}"),)
    assert split_credentials("https://ntfy.lan/alerts") == ("https://ntfy.lan/alerts", ())


@pytest.mark.parametrize(
    ("code", "delivered", "retry"),
    [(200, True, False), (201, True, False), (404, False, False), (400, False, False),
     (429, False, True), (408, False, True), (500, False, True), (503, False, True)],
)  # fmt: skip
def test_an_answer_is_delivered_refused_or_worth_another_try(
    code: int, delivered: bool, retry: bool
) -> None:
    sent = answered(code)
    assert (sent.delivered, sent.retry) == (delivered, retry)


CONFIG = """
monitors:
  - healthchecks: 'https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/{job}'
  - ntfy: https://ntfy.sh/backups-7d1f
jobs:
  photos:
    source: /srv/photos
    destination: /mnt/b/photos
    monitors:
      - healthchecks: 'https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/{job}'
      - webhook: https://n8n.lan/webhook/backup
"""


def test_each_monitor_gets_the_endings_it_reports_and_a_repeated_url_one_ping() -> None:
    cfg = parse_config(CONFIG)
    started = pings(cfg, Report("started", state("running")))
    failed = pings(cfg, Report("failed", state()))
    assert [p.label for p in started] == [
        "the healthchecks started ping of job photos (hc-ping.com)",
        "the healthchecks started ping of job photos (hc-ping.com)",
    ]
    assert len({p.key for p in started}) == 1  # the outbox sends it once
    assert [p.label.split()[1] for p in failed] == [
        "healthchecks",
        "ntfy",
        "healthchecks",
        "webhook",
    ]
    # A start and an end of one receiver share a queue: the start goes out first.
    assert started[0].queue == failed[0].queue != failed[1].queue
    assert all("PK4r7Yt2Qw8Zx1Vb6Nm3Lk" not in p.label for p in failed)


class Box:
    def __init__(self) -> None:
        self.put_pings: list[str] = []

    def put(self, ping: Any) -> bool:
        self.put_pings.append(ping.label.split(" ping")[0].removeprefix("the "))
        return True


def sink(cfg: AppConfig) -> tuple[MonitorSink, Box]:
    box = Box()
    return MonitorSink(box, lambda: cfg), box  # type: ignore[arg-type]


def test_a_dry_run_is_never_reported() -> None:
    monitors, box = sink(parse_config(CONFIG))
    monitors.run_started(state("running", dry_run=True))
    monitors.run_finished(state("completed", dry_run=True, error=None))
    assert box.put_pings == []


def test_an_interrupted_run_is_reported_once_recovery_marks_it_and_an_old_one_never() -> None:
    monitors, box = sink(parse_config(CONFIG))
    now = datetime.now(UTC)
    monitors.state_changed(state("running"))
    monitors.state_changed(state("interrupted", finished_at=now))
    assert box.put_pings == ["healthchecks interrupted", "ntfy interrupted",
                             "healthchecks interrupted", "webhook interrupted"]  # fmt: skip
    box.put_pings.clear()
    monitors.state_changed(state("interrupted", finished_at=now - timedelta(days=8)))
    assert box.put_pings == []
