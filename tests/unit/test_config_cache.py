"""The config cache: a hit is the validated config, and lets nothing through validation refuses."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from mqtt_backup.config import cache, models
from mqtt_backup.config.loader import load_config
from mqtt_backup.errors import ConfigError


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"HOME": str(tmp_path / "home"), cache.CACHE_ENV: str(tmp_path / "cache")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def write(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "mqtt-backup.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            instance: cached
            state_dir: {tmp_path / "state"}
            jobs:
              a:
                source: {tmp_path / "src"}
                destination: {tmp_path / "dst"}
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        cache.load(path)
    return info.value.errors


def models_of(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    """``model`` and every model its fields hold, at any depth (lists, unions, dicts)."""
    if model in seen:
        return
    seen.add(model)
    pending = [field.annotation for field in model.model_fields.values()]
    while pending:
        kind = pending.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            models_of(kind, seen)
        pending += list(get_args(kind))


def validators() -> set[str]:
    seen: set[type[BaseModel]] = set()
    models_of(models.AppConfig, seen)
    found = set()
    for model in seen:
        decorators = model.__pydantic_decorators__
        for kind in ("validators", "field_validators", "root_validators", "model_validators"):
            for decorator in getattr(decorators, kind).values():
                # Named where it is written: a subclass inherits its base's validators.
                func = getattr(decorator.func, "__func__", decorator.func)
                found.add(func.__qualname__)
    return found


def test_every_validator_is_either_pure_or_checked_again_on_a_hit() -> None:
    # A validator added to the models must be classified: if it reads the file system
    # (or anything but the config's values), a hit must repeat it.
    assert validators() == set(cache.FILE_SYSTEM_CHECKS) | cache.PURE_VALIDATORS


def test_a_hit_is_the_validated_config(tmp_path: Path, environ: dict[str, str]) -> None:
    path = write(tmp_path)
    first, lines = cache.load(path)
    assert list((tmp_path / "cache").iterdir())
    second, again = cache.load(path)
    assert second == first == load_config(path)
    assert again == lines


def test_a_hit_parses_no_yaml(tmp_path: Path, environ: dict[str, str]) -> None:
    path = write(tmp_path)
    cache.load(path)
    code = (
        "import sys\n"
        "from mqtt_backup.config import cache\n"
        f"config, _ = cache.load({str(path)!r})\n"
        "print(config.instance, 'yaml' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, **environ},
    )  # fmt: skip
    assert done.stdout.split() == ["cached", "False"]


@pytest.mark.parametrize("change", ["bytes", "state_dir variable", "home"])
def test_what_the_key_covers_makes_a_miss(
    tmp_path: Path, environ: dict[str, str], change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No state_dir: it comes from MQTT_BACKUP_STATE_DIR; a ~/ path: from HOME.
    (tmp_path / "src").mkdir()
    path = tmp_path / "mqtt-backup.yaml"
    path.write_text(
        f"rclone: {{config_file: ~/rclone.conf}}\n"
        f"jobs: {{a: {{source: {tmp_path / 'src'}, destination: {tmp_path / 'dst'}}}}}\n"
    )
    monkeypatch.setenv("MQTT_BACKUP_STATE_DIR", str(tmp_path / "state"))
    first, _ = cache.load(path)
    if change == "bytes":
        path.write_text(path.read_text() + "instance: renamed\n")
    elif change == "state_dir variable":
        monkeypatch.setenv("MQTT_BACKUP_STATE_DIR", str(tmp_path / "elsewhere"))
    else:
        monkeypatch.setenv("HOME", str(tmp_path / "other-home"))
    second, _ = cache.load(path)
    assert second != first
    assert (second.instance, second.state_dir, second.rclone.config_file) == (
        "renamed" if change == "bytes" else first.instance,
        tmp_path / ("elsewhere" if change == "state_dir variable" else "state"),
        tmp_path / ("other-home" if change == "home" else "home") / "rclone.conf",
    )


def test_a_destination_that_now_lies_in_the_source_is_refused(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    path = write(tmp_path)
    cache.load(path)
    (tmp_path / "dst").symlink_to(tmp_path / "src" / "inner", target_is_directory=True)
    (tmp_path / "src" / "inner").mkdir()
    errors = errors_of(path)
    assert len(errors) == 1 and "is inside the source" in errors[0]
    assert errors[0].startswith("jobs.a: ") and errors[0].endswith("(line 4)")


def test_a_missing_password_file_is_refused(tmp_path: Path, environ: dict[str, str]) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter22\n")
    path = write(tmp_path, f"mqtt:\n  password_file: {secret}\n")
    cache.load(path)
    secret.unlink()
    assert errors_of(path) == [
        f"mqtt.password_file: {str(secret)!r} does not exist or is not a file (line 8)"
    ]


def test_a_state_dir_that_became_a_file_is_refused(tmp_path: Path, environ: dict[str, str]) -> None:
    path = write(tmp_path)
    cache.load(path)
    (tmp_path / "state").write_text("not a folder")
    assert errors_of(path) == [
        f"state_dir: {str(tmp_path / 'state')!r} is a file, not a folder (line 2)"
    ]


def test_a_ca_bundle_that_no_longer_loads_is_refused(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    import ssl

    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(ssl.get_default_verify_paths().cafile or "").read_text())
    path = write(tmp_path, f"mqtt:\n  tls:\n    ca_certs: {bundle}\n")
    cache.load(path)
    bundle.write_text("garbage\n")
    [error] = errors_of(path)
    assert error.startswith("mqtt.tls.ca_certs: ") and "is not a CA bundle" in error


def test_an_entry_others_could_write_is_not_trusted(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    path = write(tmp_path)
    real, lines = cache.load(path)
    [entry] = (tmp_path / "cache").iterdir()
    key, _config, _lines = pickle.loads(entry.read_bytes())  # noqa: S301 - the test's own
    planted = real.model_copy(update={"instance": "planted"})
    entry.write_bytes(pickle.dumps((key, planted, lines)))
    os.chmod(entry, 0o620)
    assert cache.load(path)[0].instance == "cached"
    # The same file, writable by its owner only, is what the cache trusts.
    entry.write_bytes(pickle.dumps((key, planted, lines)))
    os.chmod(entry, 0o600)
    assert cache.load(path)[0].instance == "planted"


def test_a_damaged_entry_is_a_miss(tmp_path: Path, environ: dict[str, str]) -> None:
    path = write(tmp_path)
    cache.load(path)
    [entry] = (tmp_path / "cache").iterdir()
    entry.write_bytes(b"\x80\x05not a pickle")
    assert cache.load(path)[0].instance == "cached"


def test_an_invalid_file_is_never_kept(tmp_path: Path, environ: dict[str, str]) -> None:
    path = write(tmp_path, "max_concurrent_jobs: 0\n")
    for _ in range(2):
        assert errors_of(path) == [
            "max_concurrent_jobs: Input should be greater than or equal to 1 (line 7)"
        ]
    assert not (tmp_path / "cache").exists()


def test_no_home_and_no_cache_folder_means_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOME", "XDG_CACHE_HOME", cache.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path)
    assert cache.load(path)[0].instance == "cached"
    assert cache.cache_dir({"HOME": "relative"}) is None
