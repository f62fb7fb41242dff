"""Hostile and surprising config files: duplicate keys, alias bombs, odd files, relative paths."""

from __future__ import annotations

import os
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from mqtt_backup.config.loader import STATE_DIR_ENV, load_config, parse_config
from mqtt_backup.config.yaml_document import MAX_ALIAS_EXPANSION
from mqtt_backup.errors import ConfigError


def errors_of(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), base_dir=base_dir)
    return info.value.errors


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level is nine aliases of the one before."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    lines.append(f"jobs: {{j: {{source: /s, destination: /d, filters: *a{levels - 1}}}}}")
    return "\n".join(lines) + "\n"


# duplicate keys


def test_a_duplicate_setting_names_its_path_and_both_lines() -> None:
    errors = errors_of(
        """
        jobs:
          camera:
            source: /s
            destination: /d
            deletion:
              mode: verify_then_delete
              min_age: 30d
              min_age: 0s
        """
    )
    assert errors == [
        "jobs.camera.deletion.min_age: written twice (lines 8 and 9); YAML would keep only "
        "the last one, so remove or rename the others"
    ]


def test_a_job_written_twice_is_refused_rather_than_dropped() -> None:
    errors = errors_of(
        """
        jobs:
          photos: {source: /srv/photos, destination: nas:photos}
          docs: {source: /srv/docs, destination: nas:docs}
          photos: {source: /srv/camera, destination: nas:camera}
        """
    )
    assert len(errors) == 1
    assert errors[0].startswith("jobs.photos: written twice (lines 3 and 5)")


def test_every_duplicate_is_listed_with_all_its_lines() -> None:
    errors = errors_of("instance: a\nstate_dir: /x\ninstance: b\ninstance: c\nstate_dir: /y\n")
    assert [e.split(";")[0] for e in errors] == [
        "instance: written 3 times (lines 1, 3 and 4)",
        "state_dir: written twice (lines 2 and 5)",
    ]


def test_equal_keys_in_different_mappings_are_no_duplicates() -> None:
    config = parse_config(
        "jobs: {a: {source: /s, destination: /d1}, b: {source: /s, destination: /d2}}"
    )
    assert set(config.jobs) == {"a", "b"}


# aliases


def test_an_alias_bomb_is_refused_at_once_and_in_little_memory() -> None:
    bomb = alias_bomb()  # 9**9: 387 million strings if expanded
    started = time.perf_counter()
    (error,) = errors_of(bomb)
    assert time.perf_counter() - started < 0.5
    tracemalloc.start()
    try:
        errors_of(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert f"would expand it by more than {MAX_ALIAS_EXPANSION:,} values" in error
    assert "alias bomb" in error


def test_an_alias_to_its_own_container_is_refused() -> None:
    (error,) = errors_of("jobs: &j {a: {source: /s, destination: /d, filters: *j}}")
    assert error == "<config> (line 1): an alias refers to the value that contains it"


def test_shared_settings_by_anchor_and_merge_key_still_work() -> None:
    jobs = "\n".join(
        f"  job{n}: {{<<: *first, source: /s/{n}, destination: nas:{n}}}" for n in range(1, 1000)
    )
    text = (
        "jobs:\n  job0: &first\n    source: /s/0\n    destination: nas:0\n"
        "    schedule: every 6h\n    retries: 2\n    filters: ['- *.tmp', '+ **']\n"
        f"{jobs}\n"
    )
    started = time.perf_counter()
    config = parse_config(text)
    assert time.perf_counter() - started < 2
    assert len(config.jobs) == 1000
    job = config.jobs["job999"]
    assert (job.source, job.destination, job.retries) == ("/s/999", "nas:999", 2)
    assert job.filters == ["- *.tmp", "+ **"]


def test_deep_nesting_is_refused() -> None:
    (error,) = errors_of("jobs: " + "[" * 100 + "]" * 100)
    assert error == "<config> (line 1): values are nested more than 64 levels deep"


def test_an_integer_too_long_to_read_is_an_error() -> None:
    (error,) = errors_of("max_concurrent_jobs: " + "9" * 5000)
    assert error.startswith("<config>: a value cannot be read: ")


# what -c may point at


def test_a_folder_a_fifo_and_a_device_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {
        tmp_path: "is a folder; give the path of the YAML config file",
        fifo: "is not a regular file; give the path of the YAML config file",
        Path("/dev/zero"): "is not a regular file; give the path of the YAML config file",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.errors == [f"{path}: {message}"]


def test_a_huge_or_binary_file_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(5 * 1024 * 1024)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"instance: a\njobs: {}\n\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(huge)
    assert info.value.errors == [f"{huge}: is larger than 4 MiB; is it the config?"]
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert info.value.errors == [f"{binary} (line 3): is not UTF-8 text"]


# relative paths and the default state_dir


def test_relative_paths_are_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "mqtt-password").write_text("pw\n")
    (folder / "bin").mkdir()
    config_file = folder / "mqtt-backup.yaml"
    config_file.write_text(
        "state_dir: var/state\n"
        "mqtt: {password_file: mqtt-password}\n"
        "rclone: {config_file: rclone.conf, binary: bin/rclone}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/mqtt-backup.yaml"))
    assert config.state_dir == folder / "var" / "state"
    assert config.mqtt is not None and config.mqtt.password_file == folder / "mqtt-password"
    assert config.rclone.config_file == folder / "rclone.conf"
    assert config.rclone.binary == str(folder / "bin" / "rclone")


def test_absolute_paths_home_and_a_bare_rclone_name_stay_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = parse_config(
        "state_dir: ~/backup-state\nrclone: {binary: rclone, config_file: /etc/rclone.conf}\n",
        base_dir=tmp_path,
    )
    assert config.state_dir == tmp_path / "home" / "backup-state"
    assert config.rclone.binary == "rclone"
    assert config.rclone.config_file == Path("/etc/rclone.conf")


def test_the_default_state_dir_is_beside_the_config_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    config_file = tmp_path / "conf" / "mqtt-backup.yaml"
    config_file.parent.mkdir()
    config_file.write_text("jobs: {}\n")
    seen = set()
    for cwd in (tmp_path, config_file.parent, Path("/")):
        monkeypatch.chdir(cwd)
        seen.add(load_config(config_file).state_dir)
    assert seen == {tmp_path / "conf" / "state"}


def test_the_state_dir_environment_variable_sets_the_default_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, "/state")
    assert parse_config("jobs: {}", base_dir=tmp_path).state_dir == Path("/state")
    assert parse_config("state_dir: /srv/s", base_dir=tmp_path).state_dir == Path("/srv/s")


# files the config names


def test_a_password_file_that_is_not_text_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(b"hunter2\xff\xfe")
    (error,) = errors_of(f"mqtt: {{password_file: {secret}}}")
    assert error == f"mqtt.password_file: '{secret}' is not UTF-8 text (line 1)"
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100_000)
    (error,) = errors_of(f"mqtt: {{password_file: {big}}}")
    assert error == (
        f"mqtt.password_file: '{big}' is larger than 64 KiB; is it the right file? (line 1)"
    )


def test_a_state_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    assert errors_of(f"state_dir: {plain}/state") == [
        f"state_dir: '{plain}/state' cannot be a folder: '{plain}' is a file (line 1)"
    ]
    assert errors_of(f"state_dir: {plain}") == [
        f"state_dir: '{plain}' is a file, not a folder (line 1)"
    ]
    assert parse_config(f"state_dir: {tmp_path}/not/yet").state_dir == tmp_path / "not" / "yet"


def test_tls_files_must_exist(tmp_path: Path) -> None:
    errors = errors_of(
        f"mqtt: {{tls: {{ca_certs: {tmp_path}/ca.pem, certfile: {tmp_path}, keyfile: k.pem}}}}",
        base_dir=tmp_path,
    )
    assert errors == [
        f"mqtt.tls.ca_certs: '{tmp_path}/ca.pem' does not exist or is not a file (line 1)",
        f"mqtt.tls.certfile: '{tmp_path}' does not exist or is not a file (line 1)",
        f"mqtt.tls.keyfile: '{tmp_path}/k.pem' does not exist or is not a file (line 1)",
    ]


def test_a_ca_bundle_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (error,) = errors_of("mqtt: {tls: {ca_certs: ca.pem}}", base_dir=tmp_path)
    assert error.startswith(
        f"mqtt.tls.ca_certs: '{tmp_path}/ca.pem' is not a CA bundle of PEM certificates ("
    )
    assert error.endswith(") (line 1)")


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("x\n")
    assert errors_of("mqtt: {tls: {keyfile: k.pem}}", base_dir=tmp_path) == [
        "mqtt.tls: keyfile needs certfile, the client certificate it belongs to (line 1)"
    ]


def test_an_empty_path_is_refused_rather_than_taken_for_the_working_directory() -> None:
    assert errors_of("state_dir: ''\nmqtt: {password_file: ''}\n") == [
        "state_dir: is empty; write a path, or leave it out (line 1)",
        "mqtt.password_file: is empty; write a path, or leave it out (line 2)",
    ]
