"""The ``monitors:`` settings: dead-man's switches and notifications that each run reports to.

A list item names one kind (``- healthchecks: {url: …}``); each kind says which endings of a
run it reports (``on:``) and has its own defaults. docs/monitors.md has the user's side.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from mqtt_backup.config.durations import parse_duration
from mqtt_backup.jobs.state import FinalStatus
from mqtt_backup.redaction.secrets import LONG_VALUE, is_secret_name, value_secrets

# How a run ended, in the words a monitor's ``on:`` uses: the job's status, with a completed
# run that left a warning told apart (Home Assistant's Problem sensor is on for it).
# What a monitor can be told: a run started, or how it ended (the statuses of jobs/state.py,
# with "warning" for a completed run whose Problem sensor is on).
Ending = Literal["started", "warning", FinalStatus]
ENDINGS: tuple[str, ...] = get_args(Ending)
# Endings that mean the backup is not where it should be: Home Assistant's Problem sensor.
PROBLEMS = frozenset({"warning", "failed", "interrupted"})

# In a URL only the job id can be filled in; a webhook body has more to say.
URL_FIELDS = frozenset({"job"})
BODY_FIELDS = frozenset(
    {"job", "name", "status", "ending", "title", "message", "log", "run_id", "exit_code"}
)
_FIELD = re.compile(r"\{([^{}]*)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    # Built on first validation, as the other config models are (config/models.py).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def fields_in(text: str) -> list[str]:
    """The ``{name}`` fields written in ``text``."""
    return _FIELD.findall(text)


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each known ``{name}`` replaced; anything else is left as written."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group()), text)


def _unknown_fields(text: str, known: frozenset[str]) -> list[str]:
    return [name for name in fields_in(text) if name not in known]


def _check_url(url: str) -> str:
    if any(c.isspace() for c in url):
        raise ValueError("a URL cannot contain spaces; write %20 for one")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_shown(url)} is not an http:// or https:// URL with a host")
    unknown = _unknown_fields(url, URL_FIELDS)
    if unknown:
        raise ValueError(f"{{{unknown[0]}}} cannot be filled in; a URL knows only {{job}}")
    return url


def _shown(url: str) -> str:
    # A config error is printed and logged: never the part of a URL that is its secret.
    parts = urlsplit(url)
    return repr(f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "this value")


def url_secrets(url: str) -> set[str]:
    """What of a monitor URL is secret: all of it, its token and its secret query values.

    The token is the last folder of the path (a Healthchecks UUID, an Uptime Kuma push token,
    an ntfy topic, a Discord webhook token) and any folder of ``LONG_VALUE`` characters or
    more (a Healthchecks ping key). Parts holding ``{job}`` are the job id, not secrets.
    """
    found = value_secrets(url, secret=False, long_values=False)
    if not fields_in(url):
        found.add(url)
    parts = urlsplit(url)
    folders = [f for f in parts.path.split("/") if f]
    literal = [f for f in folders if not fields_in(f)]
    if folders and not fields_in(folders[-1]):
        found |= {folders[-1], unquote(folders[-1])}
    found |= {f for f in literal if len(f) >= LONG_VALUE}
    for key, value in parse_qsl(parts.query):
        if not fields_in(value) and (is_secret_name(key) or len(value) >= LONG_VALUE):
            found.add(value)
    return found


class Monitor(_Model):
    """What every kind has: where to report, and which endings."""

    kind: ClassVar[str]
    # None: every ending but those in default_off, those a later version adds included.
    default_on: ClassVar[frozenset[str] | None] = None
    default_off: ClassVar[frozenset[str]] = frozenset()
    allowed_on: ClassVar[frozenset[str]] = frozenset(ENDINGS)

    url: str = Field(min_length=1, max_length=2048, description="where to send; may hold {job}")
    on: tuple[Ending, ...] | None = Field(
        None, description="which endings to report; default: depends on the kind"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"url": value}
        if isinstance(value, dict):
            # YAML 1.1 reads an unquoted `on:` as the boolean true.
            value = {("on" if key is True else key): item for key, item in value.items()}
            if isinstance(value.get("on"), str):
                value["on"] = [value["on"]]
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_url(url)

    @model_validator(mode="after")
    def _valid(self) -> Monitor:
        for ending in self.on or ():
            if ending not in self.allowed_on:
                allowed = ", ".join(e for e in ENDINGS if e in self.allowed_on)
                raise ValueError(f"{self.kind} cannot report {ending}; it reports: {allowed}")
        return self

    def reports(self, ending: str) -> bool:
        """Whether a run that ended so is reported here."""
        if self.on is not None:
            return ending in self.on
        if self.default_on is not None:
            return ending in self.default_on
        return ending not in self.default_off

    def target(self, job_id: str) -> str:
        """The URL for one job."""
        return fill(self.url, {"job": job_id})

    def secret_values(self) -> set[str]:
        """Every string of this monitor's settings that must never be shown."""
        return url_secrets(self.url)


class HealthchecksMonitor(Monitor):
    kind = "healthchecks"


class UptimeKumaMonitor(Monitor):
    kind = "uptime_kuma"
    default_on = frozenset({"completed", "warning", "failed", "interrupted"})
    # A push says up or down; "started", "cancelled" and "skipped" are neither.
    allowed_on = default_on


class NtfyMonitor(Monitor):
    kind = "ntfy"
    default_on = PROBLEMS

    token: SecretStr | None = Field(None, description="access token of a protected topic")
    priority: int | None = Field(
        None, ge=1, le=5, description="1 (min) to 5 (max); default: by how the run ended"
    )

    def secret_values(self) -> set[str]:
        found = super().secret_values()
        if self.token is not None:
            found.add(self.token.get_secret_value())
        return found


class WebhookMonitor(Monitor):
    kind = "webhook"
    default_off = frozenset({"started"})

    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers, such as Authorization"
    )
    body: Any = Field(
        None, description="JSON to send instead of the state, with {title}, {message}, …"
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"the value of header {name} cannot span lines")
        return headers

    @field_validator("body")
    @classmethod
    def _body(cls, body: Any) -> Any:
        if body is None:
            return None
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                "must be JSON: mappings, lists, text, numbers, true/false, null "
                "(quote dates and times)"
            ) from None
        for text in _strings(body):
            unknown = _unknown_fields(text, BODY_FIELDS)
            if unknown:
                known = ", ".join(f"{{{n}}}" for n in sorted(BODY_FIELDS))
                raise ValueError(f"{{{unknown[0]}}} cannot be filled in; known: {known}")
        return body

    def secret_values(self) -> set[str]:
        found = super().secret_values()
        for name, value in self.headers.items():
            found |= value_secrets(value, secret=is_secret_name(name), long_values=True)
            if is_secret_name(name) and " " in value.strip():
                found.add(value.split()[-1])  # "Bearer X": X alone too
        if self.body is not None:
            found |= value_secrets(json.dumps(self.body), secret=False, long_values=False)
        return found


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


KINDS: tuple[type[Monitor], ...] = (
    HealthchecksMonitor,
    UptimeKumaMonitor,
    NtfyMonitor,
    WebhookMonitor,
)


class MonitorEntry(_Model):
    """One item of a ``monitors:`` list: exactly one kind, ``- healthchecks: {url: …}``."""

    healthchecks: HealthchecksMonitor | None = Field(
        None, description="Healthchecks.io (or self-hosted): start, success, fail and log pings"
    )
    uptime_kuma: UptimeKumaMonitor | None = Field(
        None, description="an Uptime Kuma push monitor: up or down with a message"
    )
    ntfy: NtfyMonitor | None = Field(
        None, description="an ntfy topic URL: a notification, on problems by default"
    )
    webhook: WebhookMonitor | None = Field(
        None, description="any URL: a JSON POST of the run's state, or of your own body"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(
                "write each monitor as a mapping of one kind, like - healthchecks: {url: …}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> MonitorEntry:
        given = [kind.kind for kind in KINDS if getattr(self, kind.kind) is not None]
        if len(given) != 1:
            names = ", ".join(kind.kind for kind in KINDS)
            found = f" (found {' and '.join(given)})" if given else ""
            raise ValueError(f"give one monitor per list item, one of {names}{found}")
        return self

    @property
    def monitor(self) -> Monitor:
        for kind in KINDS:
            found = getattr(self, kind.kind)
            if found is not None:
                return found  # type: ignore[no-any-return]
        raise AssertionError("a validated entry names one monitor")  # pragma: no cover


class MonitorDelivery(_Model):
    """How pings are delivered: each waits in the outbox until its receiver took it."""

    timeout: Duration = Field(
        timedelta(seconds=10),
        description="longest wait for one answer; run-job waits this long for its pings",
    )
    max_delay: Duration = Field(
        timedelta(minutes=5), description="longest wait between two attempts of one ping"
    )
    max_age: Duration = Field(
        timedelta(days=7), description="a ping not delivered in this time is dropped"
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=5):
            raise ValueError("must be between 1s and 5m")
        return value

    @field_validator("max_delay")
    @classmethod
    def _max_delay(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("max_age")
    @classmethod
    def _max_age(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value
