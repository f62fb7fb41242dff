from __future__ import annotations

import logging

from mqtt_backup.config import AppConfig
from mqtt_backup.secrets import (
    RedactingFilter,
    connection_string_secrets,
    flag_secrets,
    redact,
    redact_remote,
    secret_values,
)


def test_connection_string_secrets() -> None:
    remote = ":sftp,host=nas,user=me,pass='0bscured-pw',key_pem=PEMDATA:backup/photos"
    assert connection_string_secrets(remote) == {"0bscured-pw", "PEMDATA"}
    assert connection_string_secrets("/srv/photos") == set()
    assert connection_string_secrets("nas:backup/photos") == set()
    assert redact_remote(":s3,access_key_id=AK,secret_access_key=SK:bucket") == (
        ":s3,access_key_id=***,secret_access_key=***:bucket"
    )


def test_flag_secrets() -> None:
    args = ["--sftp-pass", "pw1", "--s3-secret-access-key=pw2", "--transfers", "8"]
    assert flag_secrets(args) == {"pw1", "pw2"}


def test_secret_values_collects_every_source() -> None:
    config = AppConfig.model_validate(
        {
            "mqtt": {"password": "mqtt-pass"},
            "rclone": {"extra_args": ["--webdav-pass", "dav-pass"]},
            "jobs": {"a": {"source": "/s", "destination": ":sftp,host=h,pass=sftp-pass:x"}},
        }
    )
    assert secret_values(config) == {"mqtt-pass", "dav-pass", "sftp-pass"}


def test_redacting_filter_masks_arguments(caplog) -> None:  # type: ignore[no-untyped-def]
    logger = logging.getLogger("test.redact")
    handler_filter = RedactingFilter({"hunter22"})
    logger.addFilter(handler_filter)
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("connecting with %s to %s", "hunter22", "broker")
    logger.removeFilter(handler_filter)
    assert caplog.messages == ["connecting with *** to broker"]
    assert redact("a hunter22 b", {"hunter22"}) == "a *** b"
