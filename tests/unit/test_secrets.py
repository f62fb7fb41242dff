"""Secrets are found in the config and masked in every spelling rclone and JSON give them."""

from __future__ import annotations

import json
import logging

import pytest

from mqtt_backup.config.models import AppConfig
from mqtt_backup.redaction.quoting import go_quoted, spellings
from mqtt_backup.redaction.secrets import (
    MASK,
    Masker,
    RedactingFilter,
    Secrets,
    config_secrets,
    environ_secrets,
    flag_secrets,
    is_secret_name,
    mask_patterns,
    masked_remote,
    remote_secrets,
)

TOKEN = (
    '{"access_token":"ya29.SECRETa","token_type":"Bearer",'
    '"refresh_token":"1//SECRETb","expiry":"2026-01-01T00:00:00Z"}'
)

# remote, the secrets in it (as meant and as written), what must stay readable
HOSTILE = [
    (
        f":drive,scope=drive,token='{TOKEN}':backup",
        [TOKEN, "ya29.SECRETa", "1//SECRETb"],
        [":drive,scope=drive,token=", ":backup"],
    ),
    (
        ":s3,provider=AWS,access_key_id=AKIAIOSFODNN7EXAMPLE,"
        "secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY:bucket/photos",
        ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
        [":s3,provider=AWS,access_key_id=", "bucket/photos"],
    ),
    (
        ":webdav,url='https://user:p@ss:w0rd@host/dav',vendor=nextcloud:photos",
        ["p@ss:w0rd"],
        ["https://user:", "@host/dav", "vendor=nextcloud", ":photos"],
    ),
    (
        ":sftp,host=nas.lan,user=backup,pass=Zm9vYmFyYmF6cXV4:photos",
        ["Zm9vYmFyYmF6cXV4"],
        ["host=nas.lan", "user=backup", ":photos"],
    ),
    (
        ":sftp,host=nas.lan,pass='a\"b\\c,d:e''f':photos",
        ["a\"b\\c,d:e'f", "a\"b\\c,d:e''f"],
        ["host=nas.lan", ":photos"],
    ),
    (
        'nas,pass="q""uo\'te\\,:x":dir',
        ["q\"uo'te\\,:x", 'q""uo\'te\\,:x'],
        ["nas,pass=", ":dir"],
    ),
    (
        ":azureblob,sas_url='https://acct.blob.core.windows.net/c?sv=2022&sig=S1GN%2Fx':c",
        ["https://acct.blob.core.windows.net/c?sv=2022&sig=S1GN%2Fx", "S1GN/x"],
        [":azureblob,sas_url=", ":c"],
    ),
    # Unquoted, the endpoint ends at "http" and rclone takes the keys for a path.
    (
        ":s3,endpoint=http://127.0.0.1:9,access_key_id=AKIA0123,secret_access_key=SK5678:b",
        ["AKIA0123", "SK5678"],
        [":s3,endpoint=http"],
    ),
]


def rclone_messages(remote: str) -> list[str]:
    """Where rclone writes a remote: its message, and the same in a --use-json-log line."""
    message = f'Failed to create file system for "{go_quoted(remote)}": dial tcp: refused'
    line = json.dumps({"level": "critical", "msg": message})
    return [remote, message, line, json.dumps({"args": [remote]}, ensure_ascii=False)]


@pytest.mark.parametrize(("remote", "secrets", "visible"), HOSTILE, ids=lambda v: str(v)[:24])
def test_hostile_connection_strings_are_masked_in_every_spelling(
    remote: str, secrets: list[str], visible: list[str]
) -> None:
    masker = Masker(remote_secrets(remote))
    for text in rclone_messages(remote):
        masked = masker.mask(text)
        for secret in secrets:
            for form in spellings(secret):
                assert form not in masked, (form, masked)
        assert MASK in masked
    # Ordinary parts stay readable in the plain remote.
    shown = masker.mask(remote)
    for part in visible:
        assert part in shown, shown
    # Each secret is masked also where rclone writes it alone.
    for secret in secrets:
        for form in spellings(secret):
            assert masker.mask(f"value {form} here") == f"value {MASK} here"


def test_masked_remote_shows_every_secret_looking_value_masked() -> None:
    assert masked_remote(":sftp,host=h,user=u,pass=ab,key_file_pass=x:dst") == (
        f":sftp,host=h,user=u,pass={MASK},key_file_pass={MASK}:dst"
    )
    assert masked_remote(":webdav,url='http://u:pw@h:8080/dav?access_token=T0K3N',x=1:p") == (
        f":webdav,url='http://u:{MASK}@h:8080/dav?access_token={MASK}',x=1:p"
    )
    assert masked_remote(f":drive,token='{TOKEN}':x") == f":drive,token={MASK}:x"
    # Another key's value is masked when long enough to be a credential, a URL is not.
    assert masked_remote(":b,client_id=0123456789abcdefXY,region=eu-west-1:p") == (
        f":b,client_id={MASK},region=eu-west-1:p"
    )
    assert masked_remote(":webdav,url='http://127.0.0.1:8080/dav':p") == (
        ":webdav,url='http://127.0.0.1:8080/dav':p"
    )
    assert masked_remote(":sftp,host=backup-nas.example.org:p") == (
        ":sftp,host=backup-nas.example.org:p"
    )
    assert masked_remote("/srv/photos") == "/srv/photos"
    assert masked_remote("nas:backup/photos") == "nas:backup/photos"


def test_short_secrets_are_masked_only_inside_their_connection_string() -> None:
    masker = Masker(remote_secrets(":sftp,host=h,pass=ab,env_auth=true:dst"))
    line = 'Failed for ":sftp,host=h,pass=ab,env_auth=true:dst/sub": ab is true'
    assert masker.mask(line) == (
        f'Failed for ":sftp,host=h,pass={MASK},env_auth={MASK}:dst/sub": ab is true'
    )


def test_go_quoting_of_odd_characters() -> None:
    assert go_quoted('a"b\\c') == 'a\\"b\\\\c'
    assert go_quoted("tab\there\x00\x7f") == "tab\\there\\x00\\x7f"
    assert go_quoted("é\u200b\u00a0😀\U000e0001") == "é\\u200b\\u00a0😀\\U000e0001"
    assert spellings("<&>\n") >= {"<&>\n", "\\u003c\\u0026\\u003e\\n", "<&>\\n", "<&>\\\\n"}


def test_non_ascii_and_control_characters_are_masked_in_json_too() -> None:
    secret = "pässwörd\tü<>"
    masker = Masker(Secrets(frozenset({secret})))
    for text in (json.dumps(secret), json.dumps(secret, ensure_ascii=False), go_quoted(secret)):
        assert masker.mask(f"x {text} y") in (f"x {MASK} y", f'x "{MASK}" y')


def test_overlapping_secrets_leave_no_piece_showing() -> None:
    masker = Masker(Secrets(frozenset({"xxab", "abcdef"})))
    assert masker.mask("1 xxabcdef 2") == f"1 {MASK} 2"


def test_flag_secrets() -> None:
    args = [
        "--sftp-pass",
        "pw-one",
        "--s3-secret-access-key=pw-two",
        "--sftp-key-use-agent",
        "--transfers",
        "8",
        "--header",
        "Authorization: Bearer tok-three",
        "--webdav-url=https://u:pw-four@h/dav",
        "--filter",
        "- **/a-very-long-pattern-that-is-not-secret/**",
    ]
    assert flag_secrets(args).values == {
        "pw-one",
        "pw-two",
        "Bearer tok-three",
        "tok-three",
        "pw-four",
    }


def test_environment_secrets_rclone_would_print() -> None:
    environ = {
        "RCLONE_SFTP_PASS": "env-secret",
        "RCLONE_CONFIG_NAS_PASS": "cfg-secret",
        "RCLONE_WEBDAV_URL": "https://u:url-secret@h/",
        "RCLONE_TRANSFERS": "8",
        "HOME": "/root",
    }
    assert environ_secrets(environ).values == {"env-secret", "cfg-secret", "url-secret"}


def test_config_secrets_collects_every_source() -> None:
    config = AppConfig.model_validate(
        {
            "mqtt": {"password": "mqtt-pass"},
            "rclone": {"extra_args": ["--webdav-pass", "dav-pass"]},
            "jobs": {
                "a": {
                    "source": ":local,description='x':/s",
                    "destination": ":sftp,host=h,pass=sftp-pass:x",
                    "extra_args": ["--s3-session-token=s3-token"],
                }
            },
        }
    )
    secrets = config_secrets(config, environ={"RCLONE_FTP_PASS": "ftp-pass"})
    assert secrets.values == {"mqtt-pass", "dav-pass", "sftp-pass", "s3-token", "ftp-pass"}
    assert secrets.remotes == {":sftp,host=h,pass=sftp-pass:x"}


def test_secret_names() -> None:
    for name in ("pass", "key_file_pass", "secret_access_key", "token", "client_secret",
                 "sas_url", "service_account_credentials", "account_key", "access_grant",
                 "x-auth-token", "sftp-pass", "2fa", "Authorization", "Cookie"):  # fmt: skip
        assert is_secret_name(name), name
    for name in ("host", "user", "port", "region", "endpoint", "url", "transfers", "vendor"):
        assert not is_secret_name(name), name


def test_patterns_catch_secrets_the_config_does_not_hold() -> None:
    assert mask_patterns('Get "http://u:pw@host/x"') == f'Get "http://u:{MASK}@host/x"'
    assert mask_patterns("https://user:p@ss:w0rd@host/dav") == f"https://user:{MASK}@host/dav"
    assert mask_patterns('for ":webdav,u=me,pass=SECRET:"') == f'for ":webdav,u=me,pass={MASK}:"'
    assert mask_patterns("remote,token='{\"a\":\"b\"}':x") == f"remote,token={MASK}:x"
    assert mask_patterns('x,pass="se""cret":y') == f"x,pass={MASK}:y"
    assert mask_patterns('x,pass=\\"se\\"\\"cret\\":y') == f"x,pass={MASK}:y"
    assert mask_patterns("GET /x?access_token=abc123&a=1") == f"GET /x?access_token={MASK}&a=1"
    assert mask_patterns("Authorization: Bearer abcdefgh12") == f"Authorization: Bearer {MASK}"
    assert mask_patterns("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: Basic {MASK}"
    # Ordinary text stays as it was.
    for text in ("http://host:8080/path", "sftp://user@host:22", "Get /b?max-keys=1000&prefix=x"):
        assert mask_patterns(text) == text


def test_redacting_filter_masks_messages_arguments_and_tracebacks(caplog) -> None:  # type: ignore[no-untyped-def]
    logger = logging.getLogger("test.redact")
    redactor = RedactingFilter(Secrets(frozenset({"hunter22"})))
    redactor.add(Secrets(frozenset({"later-secret"})))
    logger.addFilter(redactor)
    try:
        with caplog.at_level(logging.DEBUG, logger="test.redact"):
            logger.debug("connecting with %s to %s", "hunter22", "broker")
            logger.info('{"msg":"%s"}', json.dumps("later-secret\\")[1:-1])
            try:
                raise ValueError("hunter22 rejected")
            except ValueError:
                logger.exception("failed")
    finally:
        logger.removeFilter(redactor)
    assert caplog.messages[:2] == [f"connecting with {MASK} to broker", f'{{"msg":"{MASK}\\\\"}}']
    assert "hunter22" not in caplog.text
    assert f"ValueError: {MASK} rejected" in caplog.text
