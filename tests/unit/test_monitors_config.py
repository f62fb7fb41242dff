"""The monitors: settings, which job reports where, and which of their parts are secret."""

from __future__ import annotations

import pytest

from mqtt_backup.config.loader import parse_config
from mqtt_backup.config.models import AppConfig
from mqtt_backup.errors import ConfigError
from mqtt_backup.redaction.secrets import Masker, config_secrets

JOBS = """
jobs:
  photos:
    source: /srv/photos
    destination: /mnt/backup/photos
"""


def config(text: str) -> AppConfig:
    return parse_config(text)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.errors


def kinds(cfg: AppConfig, job: str) -> list[str]:
    return [entry.monitor.kind for entry in cfg.job_monitors(job)]


def test_each_kind_has_its_own_endings_by_default() -> None:
    cfg = config(
        JOBS
        + """
monitors:
  - healthchecks: https://hc-ping.com/0b9e2d4c-6b47-4c1e-9d0f-7a5c3e1b2a90
  - uptime_kuma: https://kuma.lan/api/push/Xk3pQ9vB2m?status=up&msg=OK&ping=
  - ntfy: https://ntfy.sh/backups-7d1f
  - webhook: https://n8n.lan/webhook/backup
"""
    )
    hc, kuma, ntfy, hook = (entry.monitor for entry in cfg.monitors)
    endings = ("started", "completed", "warning", "failed", "cancelled", "interrupted", "skipped")
    assert [e for e in endings if hc.reports(e)] == list(endings)
    assert [e for e in endings if kuma.reports(e)] == [
        "completed",
        "warning",
        "failed",
        "interrupted",
    ]
    assert [e for e in endings if ntfy.reports(e)] == ["warning", "failed", "interrupted"]
    assert [e for e in endings if hook.reports(e)] == list(endings[1:])
    # An ending a later version adds reaches the kinds that take every ending.
    assert hc.reports("timed_out") and hook.reports("timed_out") and not ntfy.reports("timed_out")


def test_on_may_be_written_unquoted_and_as_one_word() -> None:
    cfg = config(
        JOBS
        + """
monitors:
  - ntfy:
      url: https://ntfy.sh/backups-7d1f
      on: [completed, failed]
  - webhook:
      url: https://n8n.lan/webhook/backup
      on: failed
"""
    )
    ntfy, hook = (entry.monitor for entry in cfg.monitors)
    assert ntfy.on == ("completed", "failed")
    assert hook.on == ("failed",)


def test_a_job_adds_its_monitors_to_the_global_ones_or_replaces_them() -> None:
    cfg = config(
        """
monitors:
  - ntfy: https://ntfy.sh/backups-7d1f
jobs:
  photos:
    source: /srv/photos
    destination: /mnt/b/photos
    monitors:
      - healthchecks: https://hc-ping.com/0b9e2d4c-6b47-4c1e-9d0f-7a5c3e1b2a90
  music:
    source: /srv/music
    destination: /mnt/b/music
    global_monitors: false
    monitors:
      - uptime_kuma: https://kuma.lan/api/push/Xk3pQ9vB2m
  quiet:
    source: /srv/quiet
    destination: /mnt/b/quiet
    global_monitors: false
  plain:
    source: /srv/plain
    destination: /mnt/b/plain
"""
    )
    assert kinds(cfg, "photos") == ["ntfy", "healthchecks"]
    assert kinds(cfg, "music") == ["uptime_kuma"]
    assert kinds(cfg, "quiet") == []
    assert kinds(cfg, "plain") == ["ntfy"]
    assert cfg.has_monitors()
    assert not config(JOBS).has_monitors()


def test_job_fills_in_the_url_of_a_global_monitor() -> None:
    cfg = config(
        JOBS + "monitors: [{healthchecks: 'https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/{job}'}]"
    )
    assert (
        cfg.monitors[0].monitor.target("photos")
        == "https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/photos"
    )


def test_every_mistake_is_named_by_key_path_and_line() -> None:
    found = errors(
        JOBS
        + """    monitors:
      - ntfy: {url: 'ftp://ntfy.sh/t', on: [started, fail]}
      - healthcheck: https://hc-ping.com/x
      - {}
      - https://hc-ping.com/x
      - healthchecks: 'https://hc-ping.com/{jobid}'
      - uptime_kuma: {url: 'https://kuma.lan/api/push/x', on: [started]}
      - webhook: {url: 'https://h.lan/', headers: {'bad name': x}, body: {a: '{nope}'}}
      - healthchecks: https://hc-ping.com/x
        ntfy: https://ntfy.sh/t
monitor_delivery: {timeout: 10m, max_age: 10s}
"""
    )
    assert found == [
        "jobs.photos.monitors.0.ntfy.url: 'ftp://ntfy.sh/…' is not an http:// or https:// "
        "URL with a host (line 7)",
        "jobs.photos.monitors.0.ntfy.on.1: Input should be 'started', 'warning', 'completed', "
        "'failed', 'cancelled', 'skipped' or 'interrupted' (line 7)",
        "jobs.photos.monitors.1.healthcheck: unknown key (check its spelling) (line 8)",
        "jobs.photos.monitors.2: give one monitor per list item, one of healthchecks, "
        "uptime_kuma, ntfy, webhook (line 9)",
        "jobs.photos.monitors.3: write each monitor as a mapping of one kind, like "
        "- healthchecks: {url: …} (line 10)",
        "jobs.photos.monitors.4.healthchecks.url: {jobid} cannot be filled in; a URL knows "
        "only {job} (line 11)",
        "jobs.photos.monitors.5.uptime_kuma: uptime_kuma cannot report started; it reports: "
        "warning, completed, failed, interrupted (line 12)",
        "jobs.photos.monitors.6.webhook.headers: 'bad name' is not an HTTP header name (line 13)",
        "jobs.photos.monitors.6.webhook.body: {nope} cannot be filled in; known: {ending}, "
        "{exit_code}, {job}, {log}, {message}, {name}, {run_id}, {status}, {title} (line 13)",
        "jobs.photos.monitors.7: give one monitor per list item, one of healthchecks, "
        "uptime_kuma, ntfy, webhook (found healthchecks and ntfy) (line 14)",
        "monitor_delivery.timeout: must be between 1s and 5m (line 16)",
        "monitor_delivery.max_age: must be at least 1m (line 16)",
    ]


def test_the_secret_parts_of_monitors_are_masked_and_the_job_ids_are_not() -> None:
    cfg = config(
        """
monitors:
  - healthchecks: 'https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/{job}?create=1'
  - uptime_kuma: https://kuma.lan/api/push/Xk3pQ9vB2m?status=up&msg=OK&ping=
  - ntfy: {url: 'https://user:pa55word@ntfy.lan/alerts-q8', token: tk_abcdefghij1234}
  - webhook:
      url: https://discord.com/api/webhooks/112233445566778899/Zq-AbCdEfGhIjKlMnOpQrStUv
      headers: {Authorization: Bearer eyJhbGciOiJIUzI1NiJ9, X-Tenant: acme}
  - webhook: 'https://gotify.lan/message?token=AbC.dEf-12'
jobs:
  photos:
    source: /srv/photos
    destination: /mnt/b/photos
    monitors:
      - healthchecks: https://hc.lan/ping/0b9e2d4c-6b47-4c1e-9d0f-7a5c3e1b2a90
"""
    )
    masker = Masker(config_secrets(cfg, environ={}))
    text = (
        "GET https://hc-ping.com/PK4r7Yt2Qw8Zx1Vb6Nm3Lk/photos/start "
        "kuma Xk3pQ9vB2m ntfy alerts-q8 pa55word tk_abcdefghij1234 "
        "discord 112233445566778899 Zq-AbCdEfGhIjKlMnOpQrStUv "
        "auth eyJhbGciOiJIUzI1NiJ9 gotify AbC.dEf-12 "
        "hc 0b9e2d4c-6b47-4c1e-9d0f-7a5c3e1b2a90 job photos on hc-ping.com, tenant acme"
    )
    assert masker.mask(text) == (
        "GET https://hc-ping.com/***/photos/start kuma *** ntfy *** *** *** discord *** *** "
        "auth *** gotify *** hc *** job photos on hc-ping.com, tenant acme"
    )
