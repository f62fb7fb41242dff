"""Errors never carry a secret or a path from the config, and stay short."""

from __future__ import annotations

import json

from mqtt_backup.engine.redact import MAX_REASON, reason
from mqtt_backup.redaction.quoting import go_quoted
from mqtt_backup.redaction.secrets import MASK

SOURCE = "/srv/photos"
DESTINATION = ":webdav,url='http://u:s3cr3t\"x@nas:8080/',pass='a\"b\\c,d:e''f':backup"


URL = "http://u:s3cr3t\"x@nas:8080/"


def test_paths_and_their_secrets_are_masked_however_rclone_quotes_them() -> None:
    destination, url = go_quoted(DESTINATION), go_quoted(URL)
    message = f'Failed to create file system for "{destination}": parse "{url}": bad userinfo'
    assert reason(message, [SOURCE, DESTINATION]) == (
        f'Failed to create file system for "{MASK}": parse "http://u:{MASK}@nas:8080/": '
        "bad userinfo"
    )


def test_a_remote_with_another_path_keeps_the_path_but_not_the_secrets() -> None:
    quoted = go_quoted(DESTINATION.removesuffix("backup") + "other/a.jpg")
    assert reason(f'error reading "{quoted}"', [SOURCE, DESTINATION]) == (
        f"error reading \":webdav,url='http://u:{MASK}@nas:8080/',pass={MASK}:other/a.jpg\""
    )


def test_secrets_are_masked_before_the_text_is_cut_or_its_spaces_collapsed() -> None:
    remote = ":sftp,pass='two  spaces here':x"
    text = reason("x" * 150 + " " + remote, [remote])
    assert "two" not in text and "spa" not in text
    assert len(text) <= MAX_REASON
    assert "spaces" not in reason(f'for "{remote}"'.replace(":x", ":y"), [remote])


def test_unknown_secrets_are_masked_by_their_shape() -> None:
    assert "pw" not in reason("Propfind http://u:pw@host/x: refused")
    assert "SECRET" not in reason('for ":webdav,url=http://h,pass=SECRET:"')
    line = json.dumps({"msg": 'for ":b,token=\'{"a":"SECRET"}\':"'})
    assert "SECRET" not in reason(line)


def test_reason_is_short_and_without_retry_noise() -> None:
    assert reason("Attempt 3/3 failed with 1 errors and: permission denied") == "permission denied"
    assert len(reason("x" * 1000)) <= MAX_REASON
