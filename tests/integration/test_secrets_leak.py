"""No secret leaves the process, however rclone quotes it: MQTT, logs, status, history, SQLite.

Each job's destination is a connection string to a closed port on 127.0.0.1, so rclone
fails and echoes the remote in its error: Go-quoted (``\\"`` and ``\\\\``) in the
message, and JSON-encoded on top of that in the line itself (``--use-json-log``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cli_helpers import make_tree, run_cli, write_config
from tests.integration.conftest import Broker, free_port
from tests.integration.mqtt_helpers import Collector, unique_topics

TOKEN_LEAVES = ("ya29.SECRETa", "1//SECRETb")
TOKEN = (
    '{"access_token":"ya29.SECRETa","token_type":"Bearer",'
    '"refresh_token":"1//SECRETb","expiry":"2026-01-01T00:00:00Z"}'
)
MQTT_PASSWORD = 'mqtt-Pa55"w\\ord'
FLAG_SECRETS = ("flag-Secret-1\\x", 'flag-"Secret-2')
ENV_SECRET = 'env-"Secret\\3'  # rclone -vv repeats flags it reads from the environment


@dataclass(frozen=True)
class Case:
    name: str
    destination: str  # {port}: a closed port; {obscured}: a password rclone can reveal
    secrets: tuple[str, ...]


CASES = [
    Case(
        "sftp password with every special character, not obscured",
        ":sftp,host=127.0.0.1,port={port},user=u,pass='a\"b\\c,d:e''f':dst",
        ("a\"b\\c,d:e'f", "a\"b\\c,d:e''f"),  # as meant, and as written
    ),
    Case(
        "sftp with an obscured password, connection refused",
        ":sftp,host=127.0.0.1,port={port},user=u,pass={obscured}:dst",
        ("{obscured}",),
    ),
    Case(
        "webdav url with a quote in its password",
        ":webdav,url='http://u:s3cr3t\"x@127.0.0.1:{port}/',user=me,pass={obscured}:dst",
        ('s3cr3t"x', "{obscured}"),
    ),
    Case(
        "webdav url whose password holds @ and :",
        ":webdav,url='http://user:p@ss:w0rd@127.0.0.1:{port}/dav',user=me,pass={obscured}:dst",
        ("p@ss:w0rd", "{obscured}"),
    ),
    Case(
        "s3 keys, the secret one quoted",
        ":s3,provider=Other,endpoint='http://127.0.0.1:{port}',"
        "access_key_id=AKIAIOSFODNN7EXAMPLE,"
        "secret_access_key='wJalrXUtnFEMI/K7MDENG''bPx\"RfiCY\\,EXAMPLEKEY':bucket/dst",
        (
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG'bPx\"RfiCY\\,EXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG''bPx\"RfiCY\\,EXAMPLEKEY",
        ),
    ),
    Case(
        "an OAuth token in JSON",
        ":hidrive,endpoint='http://127.0.0.1:{port}/2.1',token_url='http://127.0.0.1:{port}/t',"
        f"token='{TOKEN}':dst",
        (TOKEN, *TOKEN_LEAVES),
    ),
]


def forms(secret: str) -> set[str]:
    """How a secret can be written out: raw, Go-quoted, JSON-encoded, and both."""
    # For printable ASCII, Go's %q escapes exactly what a JSON string escapes.
    assert secret.isascii() and secret.isprintable()
    quoted = json.dumps(secret)[1:-1]
    return {secret, quoted, json.dumps(quoted)[1:-1]}


@pytest.fixture
def anywhere(mosquitto: Broker) -> Iterator[Collector]:
    """A subscriber to every topic of the broker, for the whole test."""
    collector = Collector(mosquitto.host, mosquitto.port, ["#"])
    yield collector
    collector.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_secret_reaches_mqtt_logs_status_history_or_the_database(
    case: Case,
    tmp_path: Path,
    rclone_binary: str,
    mosquitto: Broker,
    anywhere: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RCLONE_FTP_PASS", ENV_SECRET)
    obscured = subprocess.run(
        [rclone_binary, "obscure", "Obscured-Pw"], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()  # bound and released: nothing listens there
    destination = case.destination.replace("{port}", str(port)).replace("{obscured}", obscured)
    secrets = [s.replace("{obscured}", obscured) for s in case.secrets]
    secrets += [MQTT_PASSWORD, *FLAG_SECRETS, ENV_SECRET, destination]
    make_tree(tmp_path / "src", {"a.txt": b"a"})
    state_dir = tmp_path / "state"
    topics = unique_topics()
    config = write_config(
        tmp_path / "c.yaml",
        {
            "instance": "lab",
            "state_dir": str(state_dir),
            "mqtt": {
                "host": mosquitto.host,
                "port": mosquitto.port,
                "username": "backup",
                "password": MQTT_PASSWORD,
                **topics,
            },
            "rclone": {
                "binary": rclone_binary,
                "extra_args": [f"--webdav-bearer-token={FLAG_SECRETS[0]}"],
            },
            "jobs": {
                "leaky": {
                    "source": str(tmp_path / "src"),
                    "destination": destination,
                    # -vv: rclone's debug lines repeat its whole command line.
                    "extra_args": ["-vv", "--retries", "1", "--low-level-retries", "1",
                                   "--sftp-pass", FLAG_SECRETS[1]],  # fmt: skip
                }
            },
        },
    )

    run = run_cli(config, "--log-level", "DEBUG", "run-job", "leaky")
    assert run.returncode == 1, run.stderr
    state_topic = f"{topics['base_topic']}/lab/jobs/leaky/state"
    final = anywhere.wait_message(state_topic, lambda m: m.json()["status"] == "failed")
    error = final.json()["error"]
    assert error and "Failed to create file system for" in error
    status = run_cli(config, "status", "--json")
    history = run_cli(config, "history", "leaky")
    assert status.returncode == 0 and history.returncode == 0, status.stderr + history.stderr
    assert json.loads(status.stdout)["leaky"]["status"] == "failed"
    # The DEBUG log really holds rclone's lines, with the remote and the flags in them.
    assert "Failed to create file system for" in run.stderr
    assert "--sftp-pass" in run.stderr and "RCLONE_FTP_PASS" in run.stderr

    places: dict[str, bytes] = {
        "run-job output": (run.stdout + run.stderr).encode(),
        "status --json": status.stdout.encode(),
        "history": history.stdout.encode(),
    }
    for message in anywhere.messages:
        places[f"MQTT {message.topic}"] = places.get(f"MQTT {message.topic}", b"") + (
            message.payload
        )
    for path in state_dir.rglob("*"):
        if path.is_file():
            places[f"file {path.relative_to(state_dir)}"] = path.read_bytes()

    leaks = [
        f"{form!r} in {where}"
        for secret in secrets
        for form in forms(secret)
        for where, data in places.items()
        if form.encode() in data
    ]
    assert not leaks, "\n".join(leaks)
