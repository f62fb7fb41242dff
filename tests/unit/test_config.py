"""Broken config files, each with the exact error a user sees."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from mqtt_backup.config.loader import config_path, load_config, parse_config
from mqtt_backup.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "example.yaml"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text))
    return info.value.errors


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert set(config.jobs) == {"photos", "camera-uploads", "documents"}
    assert config.jobs["camera-uploads"].deletion.min_age == timedelta(days=1)
    assert config.jobs["photos"].schedule is not None
    assert config.jobs["photos"].schedule.kind == "cron"


def test_minimal_job_gets_safe_defaults() -> None:
    config = parse_config("jobs: {a: {source: /s, destination: /d}}")
    job = config.jobs["a"]
    assert job.operation == "copy"
    assert job.deletion.mode == "none"
    assert job.schedule is None
    assert config.mqtt is None
    assert config.max_concurrent_jobs == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "jobs: {a: {source: /s, destination: /d, operaton: copy}}",
            "jobs.a.operaton: unknown key (check its spelling) (line 1)",
        ),
        (
            """
            jobs:
              a:
                source: /s
                destination: /d
                deletion:
                  mode: verify_then_delete
                  verfy: size
            """,
            "jobs.a.deletion.verfy: unknown key (check its spelling) (line 8)",
        ),
        (
            "jobs: {My Photos: {source: /s, destination: /d}}",
            "jobs.My Photos: 'My Photos' is not a valid id: use 1-64 of a-z, 0-9, _ and - (line 1)",
        ),
        (
            "instance: home/lab",
            "instance: 'home/lab' is not a valid id: use 1-64 of a-z, 0-9, _ and - (line 1)",
        ),
        (
            "jobs:\n  a:\n    destination: /d\n",
            "jobs.a.source: required key is missing (line 2)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, timeout: soon}}",
            "jobs.a.timeout: 'soon' is not a duration; write it like 30s, 5m, 6h or 7d (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, schedule: '0 3 * *'}}",
            "jobs.a.schedule: '0 3 * *' is neither a 5-field cron expression (like '0 3 * * *') "
            "nor an interval (like 'every 6h') (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, schedule: '0 25 * * *'}}",
            "jobs.a.schedule: '0 25 * * *' is not a valid cron expression: "
            "Error validating expression '25': the last value (25) is higher than the maximum "
            "value (23) (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, schedule: every 0s}}",
            "jobs.a.schedule: an interval schedule must be at least 'every 1s' (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, operation: mirror}}",
            "jobs.a.operation: Input should be 'copy', 'sync' or 'move' (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, filters: ['*.tmp']}}",
            "jobs.a.filters: '*.tmp' is not a filter rule; write '+ pattern' or '- pattern' "
            "(line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /s/}}",
            "jobs.a: source and destination are the same folder (/s); the destination must be "
            "separate storage (line 1)",
        ),
        (
            "mqtt: {port: 70000}",
            "mqtt.port: Input should be less than or equal to 65535 (line 1)",
        ),
        (
            "mqtt: {password: a, password_file: /etc/hostname}",
            "mqtt: give either password or password_file, not both (line 1)",
        ),
        (
            "mqtt: {password_file: /nonexistent/secret}",
            "mqtt.password_file: '/nonexistent/secret' does not exist or is not a file (line 1)",
        ),
        ("timezone: Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus' (line 1)"),
        (
            "rclone: {stats_interval: 5s, stall_timeout: 9s}",
            "rclone: stall_timeout (9s) must be at least twice rclone.stats_interval (5s), "
            "or 0 to switch it off (line 1)",
        ),
        (
            "jobs: {a: {source: /s, destination: /d, stall_timeout: 1s}}",
            "(top level): jobs.a.stall_timeout (1s) must be at least twice "
            "rclone.stats_interval (1s), or 0 to switch it off",
        ),
        ("jobs: [a, b]", "jobs: Input should be a valid dictionary (line 1)"),
    ],
)
def test_broken_config_error(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


def test_stall_timeout_defaults_and_switching_off() -> None:
    config = parse_config(
        """
        rclone: {stall_timeout: 5m}
        jobs:
          a: {source: /s, destination: /d}
          b: {source: /s, destination: /d, stall_timeout: 0}
          c: {source: /s, destination: /d, stall_timeout: 2s}
        """
    )
    assert config.rclone.stall_timeout == timedelta(minutes=5)
    assert config.jobs["a"].stall_timeout is None  # the global one applies
    assert config.jobs["b"].stall_timeout == timedelta(0)
    assert config.jobs["c"].stall_timeout == timedelta(seconds=2)
    assert parse_config("{}").rclone.stall_timeout == timedelta(minutes=10)


def test_sync_with_verify_then_delete_is_refused_with_the_reason() -> None:
    errors = errors_of(
        """
        jobs:
          a:
            source: /s
            destination: /d
            operation: sync
            deletion: {mode: verify_then_delete}
        """
    )
    assert errors == [
        "jobs.a: operation sync cannot be combined with deletion verify_then_delete: once the "
        "source files are deleted, the next sync would delete them from the destination too; "
        "use operation copy (line 3)"
    ]


def test_move_with_verify_then_delete_is_refused() -> None:
    (error,) = errors_of(
        "jobs: {a: {source: /s, destination: /d, operation: move, "
        "deletion: {mode: verify_then_delete}}}"
    )
    assert "move deletes source files without the verification" in error


def test_every_error_is_listed_at_once() -> None:
    errors = errors_of(
        """
        instance: Bad Name
        mqtt: {prot: 1883}
        jobs:
          a: {source: /s, destination: /d, retries: -1}
          b: {source: /s}
        """
    )
    assert [e.split(":")[0] for e in errors] == [
        "instance",
        "mqtt.prot",
        "jobs.a.retries",
        "jobs.b.destination",
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    (error,) = errors_of("jobs:\n  a: {source: /s\n  b: 1\n")
    # The C and pure-Python YAML parsers word the problem differently; both name the line.
    assert error.startswith("<config> (line 3): not valid YAML: ")
    assert "expected ',' or '}'" in error


def test_top_level_must_be_a_mapping() -> None:
    assert errors_of("- a\n- b\n") == ["<config>: the top level must be a mapping of settings"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.errors == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_tls_switch_and_settings() -> None:
    assert parse_config("mqtt: {tls: false}").mqtt.tls is None  # type: ignore[union-attr]
    tls = parse_config("mqtt: {tls: true}").mqtt.tls  # type: ignore[union-attr]
    assert tls is not None
    assert tls.ca_certs is None


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.setenv("MQTT_BACKUP_MQTT_PASSWORD", "from-env")
    assert parse_config("mqtt: {password: inline}").mqtt.resolved_password() == "inline"  # type: ignore[union-attr]
    config = parse_config(f"mqtt: {{password_file: {secret}}}")
    assert config.mqtt.resolved_password() == "from-file"  # type: ignore[union-attr]
    assert parse_config("mqtt: {}").mqtt.resolved_password() == "from-env"  # type: ignore[union-attr]


def test_password_never_shows_in_the_model_repr() -> None:
    config = parse_config("mqtt: {password: hunter2-secret}")
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in config.model_dump_json()


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_BACKUP_CONFIG", raising=False)
    assert config_path(None) == Path("config/mqtt-backup.yaml")
    monkeypatch.setenv("MQTT_BACKUP_CONFIG", "/etc/mqtt-backup.yaml")
    assert config_path(None) == Path("/etc/mqtt-backup.yaml")
    assert config_path("x.yaml") == Path("x.yaml")


def test_stale_after_defaults_from_schedule() -> None:
    config = parse_config(
        "jobs: {a: {source: /s, destination: /d, schedule: every 6h},"
        " b: {source: /s, destination: /d, schedule: '0 3 * * *'},"
        " c: {source: /s, destination: /d}}"
    )
    assert config.jobs["a"].effective_stale_after() == timedelta(hours=13)
    assert config.jobs["b"].effective_stale_after() == timedelta(days=2, hours=1)
    assert config.jobs["c"].effective_stale_after() is None
