"""Hostile config files and a broken history, met through the real command line."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import (
    cli_argv,
    cli_env,
    make_tree,
    runs_of,
    tree,
    write_config,
)
from tests.integration.conftest import Tls
from tests.integration.serve_helpers import Daemon
from tests.integration.serve_helpers import make_config as serve_config
from tests.unit.test_config_rules import alias_bomb

Build = Callable[..., Path]


@pytest.fixture
def config_file(tmp_path: Path, rclone_binary: str) -> Build:
    """Write a config with one copy job from tmp/src to tmp/dst, merged with ``top``."""

    def build(job: dict[str, Any] | None = None, **top: Any) -> Path:
        make_tree(tmp_path / "src", {"a.txt": b"alpha\n"})
        config: dict[str, Any] = {
            "instance": "rules",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "jobs": {
                "docs": {
                    "source": str(tmp_path / "src"),
                    "destination": str(tmp_path / "dst"),
                    **(job or {}),
                }
            },
        }
        config.update(top)
        return write_config(tmp_path / "mqtt-backup.yaml", config)

    return build


def run(
    config: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(config, *args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**cli_env(), **(env or {})},
    )


def assert_config_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, no traceback, and each expected text in the listed errors."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ": invalid configuration:" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


# duplicate keys and aliases


def test_a_duplicate_key_is_refused_by_validate_and_run_job(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    path = config_file({"deletion": {"mode": "verify_then_delete", "min_age": "30d"}})
    text = path.read_text()
    path.write_text(text.replace("      min_age: 30d\n", "      min_age: 30d\n      min_age: 0s\n"))
    line = path.read_text().splitlines().index("      min_age: 0s")
    expected = f"jobs.docs.deletion.min_age: written twice (lines {line} and {line + 1})"
    assert_config_error(run(path, "validate"), expected)
    assert_config_error(run(path, "run-job", "docs"), expected)
    assert runs_of(tmp_path / "state", "docs") == []
    assert (tmp_path / "src" / "a.txt").exists()


def test_an_alias_bomb_is_refused_quickly_within_a_memory_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())

    def limit_memory() -> None:
        # Expanding the bomb would need tens of GiB; the whole run must fit in 1 GiB.
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.monotonic()
    result = subprocess.run(
        cli_argv(path, "validate"),
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        preexec_fn=limit_memory,
    )
    elapsed = time.monotonic() - started
    assert_config_error(result, "would expand it by more than 100,000 values", "alias bomb")
    assert elapsed < 5, f"validate took {elapsed:.1f}s"


def test_sighup_with_an_alias_bomb_keeps_serve_running(tmp_path: Path, rclone_binary: str) -> None:
    src = tmp_path / "src"
    make_tree(src, {"a.txt": b"a"})
    config = serve_config(
        tmp_path, rclone_binary, {"j": {"source": str(src), "destination": str(tmp_path / "d")}}
    )
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        daemon.wait_log("serving instance")
        daemon.path.write_text(alias_bomb())
        daemon.send(signal.SIGHUP)
        daemon.wait_log("is invalid; keeping the running configuration", timeout=10)
        daemon.wait_log("alias bomb", timeout=5)
        assert daemon.process is not None and daemon.process.poll() is None
        daemon.write(config)
        daemon.send(signal.SIGHUP)
        daemon.wait_log("reloaded", timeout=10)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert "Traceback" not in daemon.log()


# relative paths


def test_cron_and_a_manual_run_share_one_history_beside_the_config(
    tmp_path: Path, rclone_binary: str
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    make_tree(tmp_path / "src", {"a.txt": b"a"})
    job = {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}
    path = write_config(
        folder / "mqtt-backup.yaml",
        {"instance": "rel", "rclone": {"binary": rclone_binary}, "jobs": {"j": job}},
    )
    env = {key: value for key, value in cli_env().items() if key != "MQTT_BACKUP_STATE_DIR"}
    for cwd in (Path("/"), tmp_path):  # cron starts in / (or $HOME), a shell anywhere
        result = subprocess.run(
            cli_argv(path, "run-job", "j"),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd,
            env=env,
        )
        assert result.returncode == 0, result.stderr
    assert len(runs_of(folder / "state", "j")) == 2
    assert not (tmp_path / "state").exists()


# tracebacks that became one-paragraph errors


def write_garbage(path: Path, data: bytes = b"-----BEGIN CERTIFICATE-----\nnope\n") -> Path:
    path.write_bytes(data)
    return path


BROKEN: dict[str, tuple[Callable[[Path], dict[str, Any]], str]] = {
    "missing ca_certs": (
        lambda d: {"mqtt": {"tls": {"ca_certs": str(d / "missing-ca.pem")}}},
        "mqtt.tls.ca_certs: '{d}/missing-ca.pem' does not exist or is not a file",
    ),
    "invalid ca_certs": (
        lambda d: {"mqtt": {"tls": {"ca_certs": str(write_garbage(d / "ca.pem"))}}},
        "mqtt.tls.ca_certs: '{d}/ca.pem' is not a CA bundle of PEM certificates",
    ),
    "non-UTF-8 password_file": (
        lambda d: {"mqtt": {"password_file": str(write_garbage(d / "pw", b"s3cr\xe9t\xff"))}},
        "mqtt.password_file: '{d}/pw' is not UTF-8 text",
    ),
    "huge timeout": (
        lambda d: {"jobs": {"docs": {"source": "/s", "destination": "/d", "timeout": "5000000d"}}},
        "jobs.docs.timeout: '5000000d' is too long: a duration can be at most 36500d",
    ),
    "state_dir under a file": (
        lambda d: {"state_dir": str(write_garbage(d / "plain")) + "/state"},
        "state_dir: '{d}/plain/state' cannot be a folder: '{d}/plain' is a file",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_setting_is_one_sentence_and_exit_2(  # type: ignore[no-untyped-def]
    case: str, tmp_path: Path, config_file
) -> None:
    overrides, expected = BROKEN[case]
    path = config_file(**overrides(tmp_path))
    for command in (["validate"], ["run-job", "docs"], ["status"]):
        result = run(path, *command)
        assert_config_error(result, expected.format(d=tmp_path))
        assert "s3cr" not in result.stderr
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("kind", ["device", "folder", "fifo"])
def test_c_that_is_no_file_is_refused_at_once(kind: str, tmp_path: Path) -> None:
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    else:
        target = Path("/dev/zero") if kind == "device" else tmp_path
    started = time.monotonic()
    result = run(target, "validate")
    assert time.monotonic() - started < 10
    what = "a folder" if kind == "folder" else "not a regular file"
    assert_config_error(result, f"{target}: is {what}; give the path of the YAML config file")


@pytest.mark.parametrize("tz", ["EST5", "Nowhere/Land", ":/nonexistent/zone"])
def test_an_unusable_tz_stops_validate_and_serve_but_not_a_backup(  # type: ignore[no-untyped-def]
    tz: str, tmp_path: Path, config_file
) -> None:
    path = config_file({"schedule": "0 3 * * *"})
    expected = f"timezone: TZ={tz!r} is not a time zone mqtt-backup can use"
    assert_config_error(run(path, "validate", env={"TZ": tz}), expected)
    assert_config_error(run(path, "serve", env={"TZ": tz}), expected)
    # One run needs no time zone: cron's TZ must not stop the backup itself.
    result = run(path, "run-job", "docs", env={"TZ": tz})
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "dst") == {"a.txt": b"alpha\n"}
    path.write_text(path.read_text() + "timezone: Europe/Berlin\n")
    assert run(path, "validate", env={"TZ": tz}).returncode == 0


# a broken history


def test_a_corrupt_history_is_moved_aside_and_the_backup_runs(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    path = config_file()
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.sqlite3").write_bytes(b"garbage, not SQLite" * 200)
    result = run(path, "run-job", "docs")
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "dst") == {"a.txt": b"alpha\n"}
    (aside,) = state.glob("history.sqlite3.corrupt-*")
    assert aside.read_bytes() == b"garbage, not SQLite" * 200
    (line,) = [line for line in result.stderr.splitlines() if "is corrupt" in line]
    assert "ERROR" in line and aside.name in line
    assert [r.status for r in runs_of(state, "docs")] == ["completed"]


def test_a_saved_state_that_no_longer_parses_is_a_warning(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    path = config_file()
    assert run(path, "run-job", "docs").returncode == 0
    with sqlite3.connect(tmp_path / "state" / "history.sqlite3") as db:
        db.execute("UPDATE job_states SET state = '{\"job_id\": 12, \"stat'")
    status = run(path, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert "the history's saved state of job docs cannot be read" in status.stderr
    result = run(path, "run-job", "docs")
    assert result.returncode == 0, result.stderr
    assert [r.status for r in runs_of(tmp_path / "state", "docs")] == ["completed"] * 2


# what validate checks about the world


def fake_rclone(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "old-rclone"
    script.write_text(f"#!/bin/sh\necho 'rclone v{version}'\necho '- os/version: test'\n")
    script.chmod(0o755)
    return script


def test_validate_checks_the_rclone_binary_and_version(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    path = config_file(rclone={"binary": str(tmp_path / "no-rclone")})
    assert_config_error(run(path, "validate"), f"rclone.binary: rclone not found at {tmp_path}")
    path = config_file(rclone={"binary": str(fake_rclone(tmp_path, "1.59.2"))})
    assert_config_error(
        run(path, "validate"),
        "rclone.binary: rclone 1.59.2 is too old; mqtt-backup needs rclone 1.60 or later",
    )
    path = config_file()
    result = run(path, "validate")
    assert result.returncode == 0, result.stderr
    assert "OK, 1 job(s): docs; rclone 1." in result.stdout


def test_validate_checks_local_sources(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "unmounted"
    path = config_file({"source": str(missing)})
    result = run(path, "validate")
    assert result.returncode == 0, result.stderr
    assert f"warning: jobs.docs.source: '{missing}' does not exist; runs fail until it does" in (
        result.stderr
    )
    path = config_file({"source": str(missing), "deletion": {"mode": "verify_then_delete"}})
    assert_config_error(
        run(path, "validate"),
        f"jobs.docs.source: '{missing}' does not exist; a verify_then_delete job must see",
    )


def test_validate_checks_the_rclone_config_file(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "rclone.conf"
    job = {"destination": "nas:backup"}
    path = config_file(job, rclone={"binary": "rclone", "config_file": "rclone.conf"})
    assert_config_error(
        run(path, "validate"), f"rclone.config_file: '{conf}' does not exist or is not a file"
    )
    conf.write_text("type = local\n")
    assert_config_error(run(path, "validate"), f"'{conf}' is not an rclone config file")
    conf.write_text("[other]\ntype = local\n")
    result = run(path, "validate")
    assert result.returncode == 0, result.stderr
    assert f"warning: jobs.docs.destination: the remote 'nas' is not defined in {conf}" in (
        result.stderr
    )
    conf.write_text("[nas]\ntype = local\n")
    result = run(path, "validate")
    assert (result.returncode, result.stderr) == (0, "")


def test_validate_loads_the_tls_files_as_the_client_will(  # type: ignore[no-untyped-def]
    tmp_path: Path, config_file, test_ca: Tls
) -> None:
    path = config_file(mqtt={"tls": {"ca_certs": str(test_ca.ca)}})
    result = run(path, "validate")
    assert result.returncode == 0, result.stderr
    # The server's certificate with the CA's key: a pair that does not match.
    mismatched = {"certfile": str(test_ca.cert), "keyfile": str(test_ca.ca.with_name("ca.key"))}
    path = config_file(mqtt={"tls": {"ca_certs": str(test_ca.ca), **mismatched}})
    assert_config_error(
        run(path, "validate"), f"mqtt.tls: the client certificate '{test_ca.cert}' and its key"
    )
    path = config_file(mqtt={"tls": {"certfile": str(test_ca.cert), "keyfile": str(test_ca.key)}})
    assert run(path, "validate").returncode == 0
