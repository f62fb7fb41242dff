"""YAML file → AppConfig, with every problem reported by key path and the line the user wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mqtt_backup.config import ID_PATTERN, AppConfig
from mqtt_backup.errors import ConfigError

DEFAULT_PATH = Path("config/mqtt-backup.yaml")
CONFIG_ENV = "MQTT_BACKUP_CONFIG"

_NOT_KEYS = frozenset({"[key]"})

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def config_path(explicit: str | Path | None) -> Path:
    """``-c`` if given, else ``$MQTT_BACKUP_CONFIG``, else config/mqtt-backup.yaml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PATH)


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read ({exc})"]) from None
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AppConfig:
    """Validate YAML text; relative ``state_dir`` stays relative to the working directory."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        lines = _line_index(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}{where}: not valid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of settings"])
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, lines) for err in exc.errors()]) from None


def _describe(error: Any, lines: dict[tuple[str, ...], int]) -> str:
    loc = [str(part) for part in error["loc"] if part not in _NOT_KEYS]
    path = ".".join(loc) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] == ID_PATTERN:
        message = f"{error['input']!r} is not a valid id: use 1-64 of a-z, 0-9, _ and -"
    line = _nearest_line(tuple(loc), lines)
    where = f" (line {line})" if line else ""
    return f"{path}: {message}{where}"


def _nearest_line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the document to the 1-based line where its key was written."""
    index: dict[tuple[str, ...], int] = {}
    root = yaml.compose(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, str(i))
                index[child] = item.start_mark.line + 1
                walk(item, child)

    if root is not None:
        walk(root, ())
    return index
