"""The validated config of a file, kept between runs so that ``run-job`` skips YAML and pydantic.

Parsing the YAML and building the config's models costs a run-job tens of milliseconds
(README, Performance). A validated config is kept under a key of everything its validation
read apart from the file system: the file's bytes and absolute path, the code that
validates it (mqtt-backup's, pydantic's, PyYAML's files: their paths, sizes and times),
the host name, the user and the environment variables the defaults come from.

A hit is never weaker than validating (docs/design.md, "Config cache"): every check that
reads the file system runs again on the kept config (``FILE_SYSTEM_CHECKS``). A miss, a
check that fails, or a cache that cannot be read or trusted means the full validation,
which reports every problem exactly as it always does; its result is kept only when valid.
``validate`` and ``serve`` never use the cache.

The cache is a pickle, so it is only read from a folder and a file that this user owns and
nobody else can write, as ssh does with its keys. It holds what the config file holds,
passwords included, and is readable by its owner only, like the state folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import socket
import stat
import sys
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from pathlib import Path

from mqtt_backup import __version__
from mqtt_backup.config.loader import Lines, parse_file_bytes, read_bytes
from mqtt_backup.config.models import (
    AppConfig,
    ca_bundle_problem,
    client_certificate_problem,
    password_file_problem,
    state_dir_problem,
    timezone_problem,
    tls_file_problem,
)
from mqtt_backup.engine.locations import overlap

logger = logging.getLogger(__name__)

CACHE_ENV = "MQTT_BACKUP_CACHE_DIR"
FORMAT = 1
# What validation reads from the environment besides the file: the state_dir default and
# the home folder of ~/ paths.
ENVIRONMENT = ("MQTT_BACKUP_STATE_DIR", "HOME")
# The packages whose code decides what a config means and whether it is valid.
PACKAGES = ("mqtt_backup", "pydantic", "pydantic_core", "yaml")
# Entries kept, one per config file: the oldest go first (tests make a config per test).
MAX_ENTRIES = 64
# ~name means a user's home from the password database, which no key here covers.
_OTHER_HOME = re.compile(rb"~[A-Za-z0-9_.-]")


def _folder_problems(config: AppConfig) -> list[str]:
    problems = [state_dir_problem(config.state_dir)]
    if config.timezone is not None:
        problems.append(timezone_problem(config.timezone))
    return [p for p in problems if p]


def _mqtt_problems(config: AppConfig) -> list[str]:
    mqtt = config.mqtt
    if mqtt is None:
        return []
    problems = [password_file_problem(mqtt.password_file) if mqtt.password_file else None]
    tls = mqtt.tls
    if tls is not None:
        files = [f for f in (tls.ca_certs, tls.certfile, tls.keyfile) if f is not None]
        problems += [tls_file_problem(f) for f in files]
        if tls.ca_certs is not None:
            problems.append(ca_bundle_problem(tls.ca_certs))
        if tls.certfile is not None:
            problems.append(client_certificate_problem(tls.certfile, tls.keyfile))
    return [p for p in problems if p]


def _job_problems(config: AppConfig) -> list[str]:
    problems = [overlap(job.source, job.destination) for job in config.jobs.values()]
    return [p for p in problems if p]


# Every validator of the config models that reads the file system, with the check that
# repeats it on a kept config. tests/unit/test_config_cache.py fails when a validator is
# added to the models without being named here or in PURE_VALIDATORS.
FILE_SYSTEM_CHECKS: dict[str, Callable[[AppConfig], list[str]]] = {
    "AppConfig._state_dir_can_be_a_folder": _folder_problems,
    "AppConfig._timezone": _folder_problems,
    "MqttConfig._password_file_exists": _mqtt_problems,
    "TlsConfig._readable": _mqtt_problems,
    "TlsConfig._ca_bundle_loads": _mqtt_problems,
    "TlsConfig._client_certificate_loads": _mqtt_problems,
    "JobConfig._safe_combination": _job_problems,
}
# Validators that decide from the config's values alone (the same bytes give the same answer).
PURE_VALIDATORS = frozenset(
    {
        "MqttConfig._tls_switch",
        "MqttConfig._password_sources",
        "RcloneConfig._positive",
        "RcloneConfig._stall_after_stats",
        "JobConfig._schedule",
        "JobConfig._filters",
        "JobConfig._timeout",
        "HistoryRetention._shorthand",
        "HttpConfig._port_alone",
        "HttpConfig._listen",
        "AppConfig._http_switch",
        "AppConfig._job_stalls_after_stats",
        "HookConfig._argv_shorthand",
        "HookConfig._only_strings",
        "HookConfig._timeout",
        "HooksConfig._a_list",
        "Monitor._shorthand",
        "Monitor._url",
        "Monitor._valid",
        "WebhookMonitor._headers",
        "WebhookMonitor._body",
        "MonitorEntry._one_mapping",
        "MonitorEntry._exactly_one",
        "MonitorDelivery._timeout",
        "MonitorDelivery._max_delay",
        "MonitorDelivery._max_age",
    }
)


def cache_dir(environ: Mapping[str, str]) -> Path | None:
    """``$MQTT_BACKUP_CACHE_DIR``, else ``$XDG_CACHE_HOME/mqtt-backup``, else
    ``~/.cache/mqtt-backup``; None without a home folder."""
    explicit = environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "mqtt-backup"
    home = environ.get("HOME")
    return Path(home) / ".cache" / "mqtt-backup" if home and os.path.isabs(home) else None


def _code_fingerprint() -> list[str]:
    """Path, size and modification time of the source files of the deciding packages:
    all of mqtt-backup's (edited in place when installed editable), the top folder of the
    others (an upgrade rewrites them)."""
    found = []
    for package in PACKAGES:
        spec = find_spec(package)
        folders = spec.submodule_search_locations if spec is not None else None
        for folder in sorted(folders or []):
            for root, dirs, files in os.walk(folder):
                if package == "mqtt_backup":
                    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                else:
                    dirs[:] = []
                for name in sorted(files):
                    if name.endswith((".py", ".so")):
                        path = os.path.join(root, name)
                        info = os.stat(path)
                        found.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return found


def cache_key(path: Path, data: bytes, environ: Mapping[str, str]) -> str:
    """The key of a config: everything besides the file system that its validation reads."""
    digest = hashlib.sha256()
    parts = [
        f"format {FORMAT}",
        f"mqtt-backup {__version__}",
        f"python {sys.version}",
        f"file {os.path.abspath(path)}",
        f"host {socket.gethostname()}",
        f"user {os.geteuid()}",
        *(f"env {name}={environ.get(name)!r}" for name in ENVIRONMENT),
        *_code_fingerprint(),
    ]
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def _entry(folder: Path, path: Path) -> Path:
    """One entry per config file: a new key replaces the old one."""
    name = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()
    return folder / f"config-{name[:32]}.pickle"


def _trusted(info: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_entry(entry: Path, key: str) -> tuple[AppConfig, Lines] | None:
    try:
        if not _trusted(os.stat(entry.parent)):
            return None
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or not _trusted(info):
            return None
        try:
            kept = pickle.load(file)  # noqa: S301 - our own file, checked above
        except Exception:  # noqa: BLE001 - a damaged or foreign entry is a miss
            return None
    if not (isinstance(kept, tuple) and len(kept) == 3 and kept[0] == key):
        return None
    _key, config, lines = kept
    return (config, lines) if isinstance(config, AppConfig) else None


def _write_entry(entry: Path, key: str, config: AppConfig, lines: Lines) -> None:
    with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            pickle.dump((key, config, lines), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, entry)  # whole or not at all, for a run-job started meanwhile
        _prune(entry.parent)


def _prune(folder: Path) -> None:
    entries = []
    for path in folder.glob("config-*.pickle"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime_ns, path))
    for _mtime, path in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            path.unlink()


def problems(config: AppConfig) -> list[str]:
    """What the file-system checks of validation say about a kept config now."""
    found: list[str] = []
    for check in dict.fromkeys(FILE_SYSTEM_CHECKS.values()):
        found += check(config)
    return found


def load(path: Path) -> tuple[AppConfig, Lines]:
    """load_config_and_lines for a command that runs no schedules (the host's time zone is
    not checked), from the cache when it holds this file's validated config.

    Raises ConfigError as load_config does: those come from the full validation only.
    """
    # Validation reads this process's environment, so the key must too.
    environ = os.environ
    path = Path(path)
    data = read_bytes(path)
    folder = cache_dir(environ)
    if folder is None or _OTHER_HOME.search(data):
        return parse_file_bytes(path, data, scheduling=False)
    key = cache_key(path, data, environ)
    entry = _entry(folder, path)
    kept = _read_entry(entry, key)
    if kept is not None:
        found = problems(kept[0])
        if not found:
            return kept
        logger.debug("config cache: %s now fails a check (%s); validating", path, found[0])
    config, lines = parse_file_bytes(path, data, scheduling=False)
    _write_entry(entry, key, config, lines)
    return config, lines
