"""Errors never carry a secret or a path from the config."""

from __future__ import annotations

from mqtt_backup.engine.redact import reason, redact

SOURCE = ":sftp,host=x,pass=SECRET:path"


def test_connection_string_and_secrets_removed() -> None:
    text = f'Failed to create file system for "{SOURCE}": dial tcp: refused'
    assert "SECRET" not in reason(text, [SOURCE])
    assert "SECRET" not in redact('for ":webdav,url=http://u:pw@h,pass=SECRET:"')
    assert "pw" not in redact("http://u:pw@host/x")
    assert "SECRET" not in redact("token=SECRET other")


def test_reason_is_short_and_without_retry_noise() -> None:
    assert reason("Attempt 3/3 failed with 1 errors and: permission denied") == "permission denied"
    assert len(reason("x" * 1000)) <= 160
