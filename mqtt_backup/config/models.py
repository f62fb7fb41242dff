"""The configuration as pydantic models: frozen, unknown keys rejected, every field described."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mqtt_backup.config.durations import format_duration, parse_duration
from mqtt_backup.config.monitors import MonitorDelivery, MonitorEntry
from mqtt_backup.engine.locations import overlap
from mqtt_backup.scheduling.triggers import Schedule, parse_schedule

ID_PATTERN = r"^[a-z0-9_-]{1,64}$"
DEFAULT_STALL_TIMEOUT = timedelta(minutes=10)
DEFAULT_HOOK_TIMEOUT = timedelta(minutes=5)
MAX_HOOKS = 20
PASSWORD_ENV = "MQTT_BACKUP_MQTT_PASSWORD"  # noqa: S105 - a variable name

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    # defer_build: the validators' schema is built on the first validation, not at import.
    # A run-job whose config comes from the cache (config/cache.py) never validates one.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def default_instance() -> str:
    """The host name, lower-cased and reduced to the characters allowed in topics."""
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name[:64] or "mqtt-backup"


def _file_problem(path: Path, max_bytes: int) -> str | None:
    """Why ``path`` is no readable regular file of at most ``max_bytes``, or None."""
    try:
        info = path.stat()
    except OSError:
        return f"{str(path)!r} does not exist or is not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{str(path)!r} does not exist or is not a file"
    if info.st_size > max_bytes:
        return f"{str(path)!r} is larger than {max_bytes // 1024} KiB; is it the right file?"
    if not os.access(path, os.R_OK):
        return f"{str(path)!r} cannot be read by this user"
    return None


def _ssl_reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


def tls_file_problem(path: Path) -> str | None:
    """Why a TLS file cannot be used, or None."""
    return _file_problem(path, 16 * 1024 * 1024)


def ca_bundle_problem(path: Path) -> str | None:
    """Why ``path`` does not load as a CA bundle, or None."""
    import ssl

    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{str(path)!r} is not a CA bundle of PEM certificates ({_ssl_reason(exc)})"
    return None


def client_certificate_problem(certfile: Path, keyfile: Path | None) -> str | None:
    """Why the client certificate and its key do not load, or None."""
    import ssl

    def no_password() -> bytes:
        return b""  # never ask on the terminal: the MQTT client has no password either

    try:
        ssl.create_default_context().load_cert_chain(certfile, keyfile, password=no_password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return (
            f"the client certificate {str(certfile)!r} and its key do not load "
            f"({_ssl_reason(exc)}); the key must be PEM, unencrypted, and match"
        )
    return None


class TlsConfig(_Model):
    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker certificate")
    certfile: Path | None = Field(None, description="client certificate, for brokers that ask")
    keyfile: Path | None = Field(None, description="key of the client certificate")
    insecure: bool = Field(False, description="accept a certificate whose host name does not match")

    # The files are loaded here the way the MQTT client will load them, so that a missing or
    # broken one is a config error at start-up rather than a traceback at the first connect.

    @field_validator("ca_certs", "certfile", "keyfile")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        problem = tls_file_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("ca_certs")
    @classmethod
    def _ca_bundle_loads(cls, value: Path | None) -> Path | None:
        problem = ca_bundle_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _client_certificate_loads(self) -> TlsConfig:
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile needs certfile, the client certificate it belongs to")
        if self.certfile is not None:
            problem = client_certificate_problem(self.certfile, self.keyfile)
            if problem is not None:
                raise ValueError(problem)
        return self


def password_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot hold the MQTT password, or None."""
    problem = _file_problem(path, 64 * 1024)
    if problem is not None:
        return problem
    try:
        path.read_bytes().decode("utf-8")
    except OSError as exc:
        return f"{str(path)!r} cannot be read ({exc.strerror})"
    except UnicodeDecodeError:
        # Never the bytes themselves: they are (part of) the password.
        return f"{str(path)!r} is not UTF-8 text"
    return None


class MqttConfig(_Model):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(None, description="user name, when the broker asks for one")
    password: SecretStr | None = Field(None, description="password; prefer password_file or env")
    password_file: Path | None = Field(None, description="file holding the password")
    tls: TlsConfig | None = Field(None, description="false, true (system CAs) or TLS settings")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version")
    client_id: str | None = Field(None, description="MQTT client id; default from the instance")
    keepalive: int = Field(60, ge=5, le=3600, description="seconds between keep-alive pings")
    base_topic: str = Field("mqtt_backup", pattern=r"^[A-Za-z0-9_/-]{1,128}$")
    discovery: bool = Field(True, description="announce every job to Home Assistant")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_/-]{1,128}$")
    discovery_format: Literal["device", "component"] = Field(
        "device", description="device (HA >= 2024.12) or component (older HA)"
    )
    allow_commands: bool = Field(True, description="accept run/cancel/enable commands over MQTT")
    progress_interval: Duration = Field(
        timedelta(seconds=5), description="least time between two progress publishes of one job"
    )

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="after")
    def _password_sources(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self

    @field_validator("password_file")
    @classmethod
    def _password_file_exists(cls, value: Path | None) -> Path | None:
        problem = password_file_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    def resolved_password(self) -> str | None:
        """The password from ``password``, ``password_file`` or the environment, in that order."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip("\r\n")
        return os.environ.get(PASSWORD_ENV) or None


class RcloneConfig(_Model):
    binary: str = Field("rclone", description="rclone executable, a name on PATH or a path")
    config_file: Path | None = Field(None, description="rclone.conf, passed as --config")
    extra_args: list[str] = Field(default_factory=list, description="flags added to every call")
    stats_interval: Duration = Field(
        timedelta(seconds=1), description="how often rclone reports its progress"
    )
    stall_timeout: Duration = Field(
        DEFAULT_STALL_TIMEOUT,
        description="stop a run whose rclone reports no progress this long; 0 switches it off",
    )

    @field_validator("stats_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(milliseconds=100):
            raise ValueError("must be at least 100ms")
        return value

    @model_validator(mode="after")
    def _stall_after_stats(self) -> RcloneConfig:
        _check_stall(self.stall_timeout, self.stats_interval)
        return self


class DeletionConfig(_Model):
    mode: Literal["none", "verify_then_delete"] = Field(
        "none", description="verify_then_delete removes source files proven at the destination"
    )
    verify: Literal["checksum", "size", "download"] = Field(
        "checksum", description="how a destination file is proven identical"
    )
    min_age: Duration = Field(timedelta(0), description="only delete source files older than this")
    remove_empty_dirs: bool = Field(
        False, description="also remove source folders left empty by the deletion"
    )


class HookConfig(_Model):
    """One program run around a backup (docs/hooks.md); written as its argv list, or as this."""

    run: list[str] = Field(
        min_length=1,
        description="the program and its arguments; a shell only when written [sh, -c, '…']",
    )
    timeout: Duration = Field(
        DEFAULT_HOOK_TIMEOUT, description="stop the hook (and fail the run) after this long"
    )

    @model_validator(mode="before")
    @classmethod
    def _argv_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            # Never split a string or hand it to a shell: the user says which program runs.
            raise ValueError(
                "a hook is a list: the program and its arguments, like "
                "[/usr/local/bin/mount-backup-disk, --wait], or [sh, -c, '…'] for a shell"
            )
        return {"run": value} if isinstance(value, list) else value

    @field_validator("run", mode="before")
    @classmethod
    def _only_strings(cls, argv: Any) -> Any:
        if isinstance(argv, str):
            raise ValueError("write the program and its arguments as a list, not one string")
        if isinstance(argv, list):
            for number, arg in enumerate(argv, 1):
                if not isinstance(arg, str):
                    # YAML reads 0755 as 493 and yes as true: a number or a switch is refused,
                    # not passed on changed.
                    raise ValueError(
                        f"argument {number} ({arg!r}) is not text; quote it ('{arg}')"
                    )
            if not argv:
                raise ValueError("is empty; name the program to run")
            if not argv[0]:
                raise ValueError("the program name is empty")
        return argv

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @property
    def program(self) -> str:
        """The program's file name, which names the hook in messages (never its arguments)."""
        return os.path.basename(self.run[0]) or self.run[0]


HookList = Annotated[list[HookConfig], Field(max_length=MAX_HOOKS)]


class HooksConfig(_Model):
    """Programs run before and after a job's backup. In a job, each list it sets replaces the
    list of that name in the global ``hooks``; an empty list switches the global one off."""

    before: HookList | None = Field(
        default=None,
        description="before the backup; exit 75 skips the run, any other failure fails it",
    )
    on_failure: HookList | None = Field(default=None, description="after a run that failed")
    after: HookList | None = Field(
        default=None, description="after a completed or failed run whose before hooks all succeeded"
    )

    @field_validator("before", "on_failure", "after", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            raise ValueError(
                "write a list of hooks, each a list of the program and its arguments: "
                "- [/usr/local/bin/mount-backup-disk]"
            )
        return value

    def under(self, default: HooksConfig) -> HooksConfig:
        """These hooks, each list not set here taken from ``default``, and every list set."""
        return HooksConfig(
            before=self.before if self.before is not None else default.before or [],
            on_failure=self.on_failure if self.on_failure is not None else default.on_failure or [],
            after=self.after if self.after is not None else default.after or [],
        )

    def all(self) -> list[HookConfig]:
        return [*(self.before or []), *(self.on_failure or []), *(self.after or [])]


class JobConfig(_Model):
    name: str | None = Field(None, max_length=200, description="display name (any text)")
    source: str = Field(min_length=1, description="rclone path to back up")
    destination: str = Field(min_length=1, description="rclone path to back up to")
    operation: Literal["copy", "sync", "move"] = Field("copy", description="rclone operation")
    schedule: Schedule | None = Field(
        None, description='cron (5 fields) or "every 6h"; omit for manual runs only'
    )
    catch_up: bool = Field(True, description="run at start-up if a scheduled run was missed")
    stale_after: Duration | None = Field(
        None, description="overdue when the last success is older (default: from the schedule)"
    )
    enabled: bool = Field(True, description="whether the schedule fires")
    timeout: Duration | None = Field(None, description="cancel a run that takes longer")
    retries: int = Field(0, ge=0, le=100, description="extra attempts after a retryable failure")
    retry_delay: Duration = Field(timedelta(minutes=5), description="wait between attempts")
    filters: list[str] = Field(default_factory=list, description="rclone filter rules, in order")
    extra_args: list[str] = Field(default_factory=list, description="flags for the transfer")
    deletion: DeletionConfig = Field(default_factory=DeletionConfig)
    stall_timeout: Duration | None = Field(
        None,
        description="stop a run whose rclone makes no progress this long; 0 switches it off; "
        "default: rclone.stall_timeout",
    )
    monitors: list[MonitorEntry] = Field(
        default_factory=list, description="where this job's runs are reported, besides the global"
    )
    global_monitors: bool = Field(
        True, description="whether the top-level monitors report this job too"
    )
    hooks: HooksConfig = Field(
        HooksConfig(),
        description="programs run before and after this job; each list replaces the global one",
    )

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return parse_schedule(value) if isinstance(value, str) else value

    @field_validator("filters")
    @classmethod
    def _filters(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if not re.match(r"^[+-] \S", rule):
                raise ValueError(f"{rule!r} is not a filter rule; write '+ pattern' or '- pattern'")
        return rules

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _safe_combination(self) -> JobConfig:
        if self.deletion.mode == "verify_then_delete":
            if self.operation == "sync":
                raise ValueError(
                    "operation sync cannot be combined with deletion verify_then_delete: "
                    "once the source files are deleted, the next sync would delete them "
                    "from the destination too; use operation copy"
                )
            if self.operation == "move":
                raise ValueError(
                    "operation move cannot be combined with deletion verify_then_delete: "
                    "move deletes source files without the verification; use operation copy"
                )
        # Checked for every operation: a copy into itself nests, a sync over its own source
        # deletes it, and verify-then-delete would compare each file with itself.
        shared = overlap(self.source, self.destination)
        if shared is not None:
            raise ValueError(f"{shared}; the destination must be separate storage")
        return self

    def effective_stale_after(self) -> timedelta | None:
        """When the last success is overdue: the setting, else twice the schedule period + 1h."""
        if self.stale_after is not None:
            return self.stale_after
        if self.schedule is None:
            return None
        return self.schedule.period() * 2 + timedelta(hours=1)


def _check_stall(stall: timedelta, stats: timedelta, where: str = "") -> None:
    """A stall timeout must span two stats reports, or a busy rclone would look stalled."""
    if timedelta(0) < stall < 2 * stats:
        raise ValueError(
            f"{where}stall_timeout ({format_duration(stall)}) must be at least twice "
            f"rclone.stats_interval ({format_duration(stats)}), or 0 to switch it off"
        )


class HistoryRetention(_Model):
    """How long runs stay in the history: both bounds apply, ``null`` switches one off."""

    max_age: Duration | None = Field(
        timedelta(days=90), description="runs that started longer ago are removed"
    )
    max_runs: int | None = Field(
        1000, ge=1, description="per job, only this many of the newest runs are kept"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # "history_retention: 30d" sets the age and keeps the default count.
        if isinstance(value, str):
            return {"max_age": value}
        if value is not None and not isinstance(value, dict | HistoryRetention):
            raise ValueError("write a duration like 90d, or {max_age: 90d, max_runs: 1000}")
        return value


def parse_listen(text: str) -> tuple[str, int]:
    """``address:port`` (``[address]:port`` for IPv6) as an IP address and a port.

    Raises ValueError with the sentence for the user.
    """
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{text!r} is not address:port; write for example 127.0.0.1:8099")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets: [{host}]:{port}")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address; write one such as 127.0.0.1, [::1] or 0.0.0.0"
        ) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port {port!r} is not a number from 1 to 65535")
    return str(address), int(port)


class HttpConfig(_Model):
    """The opt-in HTTP endpoint of ``serve``: /healthz, /livez and /metrics (docs/metrics.md)."""

    allow_remote: bool = Field(
        False,
        description="listen on an address other hosts can reach; the endpoint has no "
        "authentication, so anyone who reaches it reads the job ids and their state",
    )
    listen: str = Field(
        "127.0.0.1:8099",
        description="address:port to listen on (a port alone: on 127.0.0.1); loopback unless "
        "allow_remote",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _port_alone(cls, value: Any) -> Any:
        # "listen: 8099" (YAML reads a number) is that port on the loopback address.
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
            return f"127.0.0.1:{value}"
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str, info: ValidationInfo) -> str:
        host, _port = parse_listen(value)
        if not ipaddress.ip_address(host).is_loopback and not info.data.get("allow_remote"):
            raise ValueError(
                f"{value} can be reached from other hosts and the endpoint has no "
                "authentication; set http.allow_remote: true to accept that, or listen on "
                "127.0.0.1"
            )
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def state_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) the state folder, or None."""
    # The nearest part that exists must be a folder, or the history cannot be created.
    for folder in (path, *path.parents):
        try:
            mode = folder.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return None  # not ours to see; opening the history will say why
        if stat.S_ISDIR(mode):
            return None
        if folder == path:
            return f"{str(path)!r} is a file, not a folder"
        return f"{str(path)!r} cannot be a folder: {str(folder)!r} is a file"
    return None


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is no time zone this host knows, or None."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}"
    return None


class AppConfig(_Model):
    instance: str = Field(default_factory=default_instance, pattern=ID_PATTERN)
    state_dir: Path = Field(Path("./state"), description="SQLite history and per-job locks")
    timezone: str | None = Field(None, description="time zone of cron schedules; default: host's")
    max_concurrent_jobs: int = Field(2, ge=1, le=64, description="runs allowed at once")
    mqtt: MqttConfig | None = Field(None, description="broker; without it state is kept locally")
    rclone: RcloneConfig = Field(default_factory=RcloneConfig)
    jobs: dict[Annotated[str, Field(pattern=ID_PATTERN)], JobConfig] = Field(default_factory=dict)
    history_retention: HistoryRetention = Field(
        default_factory=HistoryRetention, description="how long finished runs stay in the history"
    )
    http: HttpConfig | None = Field(
        None, description="serve's HTTP endpoint for health checks and Prometheus; off when unset"
    )
    monitors: list[MonitorEntry] = Field(
        default_factory=list, description="where every job's runs are reported (docs/monitors.md)"
    )
    monitor_delivery: MonitorDelivery = Field(
        default_factory=lambda: MonitorDelivery.model_validate({}),
        description="timeouts, retries and age limit of pings",
    )
    hooks: HooksConfig = Field(
        HooksConfig(), description="hooks of every job that sets no list of its own"
    )

    @field_validator("http", mode="before")
    @classmethod
    def _http_switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_validator("state_dir")
    @classmethod
    def _state_dir_can_be_a_folder(cls, value: Path) -> Path:
        problem = state_dir_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        problem = timezone_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _job_stalls_after_stats(self) -> AppConfig:
        for job_id, job in self.jobs.items():
            if job.stall_timeout is not None:
                _check_stall(job.stall_timeout, self.rclone.stats_interval, f"jobs.{job_id}.")
        return self

    def display_name(self, job_id: str) -> str:
        """The job's name, falling back to its id."""
        return self.jobs[job_id].name or job_id

    def job_monitors(self, job_id: str) -> list[MonitorEntry]:
        """The monitors a job's runs are reported to: the global ones (unless the job says
        ``global_monitors: false``), then the job's own."""
        job = self.jobs[job_id]
        return [*(self.monitors if job.global_monitors else []), *job.monitors]

    def has_monitors(self) -> bool:
        return bool(self.monitors) or any(job.monitors for job in self.jobs.values())

    def job_hooks(self, job_id: str) -> HooksConfig:
        """The hooks a run of the job runs: its own lists, else the global ones."""
        return self.jobs[job_id].hooks.under(self.hooks)
