"""YAML file → AppConfig, with every problem reported by key path and the line the user wrote."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mqtt_backup.config.models import ID_PATTERN, AppConfig
from mqtt_backup.errors import ConfigError

DEFAULT_PATH = Path("config/mqtt-backup.yaml")
CONFIG_ENV = "MQTT_BACKUP_CONFIG"
# The state_dir of a file that names none (the container image sets it to /state).
STATE_DIR_ENV = "MQTT_BACKUP_STATE_DIR"
# Far above any real configuration (a thousand jobs take ~150 KiB), and small enough that
# parsing whatever is behind -c stays within a bounded time and memory.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

Lines = dict[tuple[str, ...], int]

_NOT_KEYS = frozenset({"[key]"})
# Settings that name files or folders: relative ones are relative to the config's folder.
_PATHS = (
    ("state_dir",),
    ("mqtt", "password_file"),
    ("mqtt", "tls", "ca_certs"),
    ("mqtt", "tls", "certfile"),
    ("mqtt", "tls", "keyfile"),
    ("rclone", "config_file"),
)


def config_path(explicit: str | Path | None) -> Path:
    """``-c`` if given, else ``$MQTT_BACKUP_CONFIG``, else config/mqtt-backup.yaml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PATH)


def load_config(path: str | Path, *, scheduling: bool = False) -> AppConfig:
    """Read and validate a config file; raises ConfigError listing every problem.

    ``scheduling``: the caller runs schedules (serve, and validate on its behalf), so the
    host's time zone must be usable when the file sets none.
    """
    return load_config_and_lines(path, scheduling=scheduling)[0]


def load_config_and_lines(path: str | Path, *, scheduling: bool = False) -> tuple[AppConfig, Lines]:
    """load_config, and the line of each key path, to point later findings at the file."""
    path = Path(path)
    return parse_file_bytes(path, read_bytes(path), scheduling=scheduling)


def parse_file_bytes(path: Path, data: bytes, *, scheduling: bool) -> tuple[AppConfig, Lines]:
    """Validate ``data``, read from the config file ``path``."""
    text = decode(path, data)
    # The folder as written, not through symlinks: a linked config file keeps the paths
    # relative to where the link is, like a linked script's working files.
    base_dir = Path(os.path.abspath(path)).parent
    return _parse(text, str(path), base_dir, scheduling)


def read_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_CONFIG_BYTES."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer that never comes.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigError([f"{path}: is {kind}; give the path of the YAML config file"])
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [f"{path}: is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB; is it the config?"]
        )
    return data


def decode(path: Path, data: bytes) -> str:
    """The config's text; a ConfigError naming the line when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path} (line {line}): is not UTF-8 text"]) from None


def parse_config(
    text: str,
    source: str = "<config>",
    base_dir: Path | None = None,
    *,
    scheduling: bool = False,
) -> AppConfig:
    """Validate YAML text; relative paths in it are relative to ``base_dir`` (default: cwd)."""
    return _parse(text, source, base_dir, scheduling)[0]


def _parse(
    text: str, source: str, base_dir: Path | None, scheduling: bool
) -> tuple[AppConfig, Lines]:
    # Imported here: a config from the cache (config/cache.py) is never parsed.
    from mqtt_backup.config.yaml_document import parse_document

    document = parse_document(text, source)
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of settings"])
    data = _with_paths(data, Path(os.path.abspath(base_dir or Path.cwd())))
    # An empty string would be the working directory to pathlib: the very dependence that
    # relative paths avoid.
    empty = [keys for keys in _PATHS if _get(data, keys) == ""]
    errors = [at_line(k, "is empty; write a path, or leave it out", document.lines) for k in empty]
    config: AppConfig | None = None
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        errors += [
            _describe(err, document.lines)
            for err in exc.errors()
            if tuple(map(str, err["loc"])) not in empty  # said above, more plainly
        ]
    if scheduling and data.get("timezone") is None:
        # Only schedules use a time zone; run-job need not pay for tzlocal (~15 ms).
        problem = host_timezone_problem()
        if problem is not None:
            errors.append(f"timezone: {problem}")
    if errors or config is None:
        raise ConfigError(errors)
    return config, document.lines


def _with_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with every relative path made absolute against ``base``, and a state_dir.

    Copies what it changes: aliases may share a mapping between several places.
    """
    if "state_dir" not in data:
        data = {**data, "state_dir": os.environ.get(STATE_DIR_ENV) or "state"}
    for keys in _PATHS:
        data = _replace(data, keys, lambda value: _absolute(value, base))
    rclone = data.get("rclone")
    if isinstance(rclone, dict) and isinstance(rclone.get("binary"), str):
        binary = rclone["binary"]
        # A bare name is looked up on PATH, as a shell does; a path with a folder is a file.
        if os.sep in binary:
            data = _replace(data, ("rclone", "binary"), lambda value: _absolute(value, base))
    data = _replace(data, ("hooks",), lambda hooks: _hook_programs(hooks, base))
    jobs = data.get("jobs")
    if isinstance(jobs, dict):
        data = {
            **data,
            "jobs": {
                job_id: _replace(job, ("hooks",), lambda hooks: _hook_programs(hooks, base))
                if isinstance(job, dict)
                else job
                for job_id, job in jobs.items()
            },
        }
    return data


def _hook_programs(hooks: Any, base: Path) -> Any:
    """Each hook's program made absolute when it names a folder, as rclone.binary is."""
    if not isinstance(hooks, dict):
        return hooks  # the model says what is wrong with it
    out = dict(hooks)
    for kind, entries in hooks.items():
        if isinstance(entries, list):
            out[kind] = [_hook_program(entry, base) for entry in entries]
    return out


def _hook_program(hook: Any, base: Path) -> Any:
    if isinstance(hook, dict):
        return {**hook, "run": _hook_program(hook.get("run"), base)} if "run" in hook else hook
    if isinstance(hook, list) and hook and isinstance(hook[0], str) and os.sep in hook[0]:
        return [_absolute(hook[0], base), *hook[1:]]
    return hook


def _replace(
    data: dict[str, Any], keys: tuple[str, ...], change: Callable[[Any], Any]
) -> dict[str, Any]:
    head, *rest = keys
    if head not in data:
        return data
    value = data[head]
    if rest:
        if not isinstance(value, dict):
            return data
        return {**data, head: _replace(value, tuple(rest), change)}
    return {**data, head: change(value)}


def _get(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value  # the model says what is wrong with it
    path = Path(value)
    with contextlib.suppress(RuntimeError):  # no home folder: ~ is taken as written
        path = path.expanduser()
    return str(path if path.is_absolute() else base / path)


def host_timezone_problem() -> str | None:
    """Why the host's time zone cannot be used for schedules, or None when it can."""
    tz = os.environ.get("TZ")
    if tz:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(tz.removeprefix(":"))
            return None  # a zone name: what tzlocal would answer, without importing it
        except (LookupError, ValueError, OSError):
            pass
    try:
        from tzlocal import get_localzone

        get_localzone()
    except Exception as exc:  # noqa: BLE001 - tzlocal raises several kinds for a bad zone
        if tz:
            return (
                f"TZ={tz!r} is not a time zone mqtt-backup can use; set timezone: in this "
                "file, or TZ to a name from the tz database such as Europe/Berlin or UTC"
            )
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return (
            f"the host's time zone cannot be found ({reason}); set timezone: in this file, "
            "for example timezone: UTC"
        )
    return None


def _describe(error: Any, lines: Lines) -> str:
    loc = [str(part) for part in error["loc"] if part not in _NOT_KEYS]
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] == ID_PATTERN:
        message = f"{error['input']!r} is not a valid id: use 1-64 of a-z, 0-9, _ and -"
    return at_line(tuple(loc), message, lines)


def at_line(key: tuple[str, ...], message: str, lines: Lines) -> str:
    """``key.path: message (line N)``, with the line of the key or of its nearest parent."""
    line = line_of(key, lines)
    where = f" (line {line})" if line else ""
    return f"{'.'.join(key) or '(top level)'}: {message}{where}"


def line_of(loc: tuple[str, ...], lines: Lines) -> int | None:
    """The line of ``loc``, else of its nearest parent that was written in the file."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None
