"""Every secret the config holds, masked wherever text leaves the process.

What is a secret:
- the MQTT password;
- in a connection string (a job's source or destination), the value of every parameter
  whose key looks secret (see ``SECRET_WORDS``), and of any other parameter when it is
  ``LONG_VALUE`` characters or longer, except a URL or a host name (an address is no
  secret, and masking it would hide what failed); in any value, a URL's password and
  the values of its secret-looking query parameters; in a JSON value (an OAuth token),
  each string leaf as well as the whole;
- the values of secret-looking flags in ``extra_args`` and hooks (``--sftp-pass X``,
  ``--s3-secret-access-key=X``) and of ``RCLONE_…`` environment variables, which rclone
  repeats in its debug output, and the credential in a ``--header`` for authorization;
- of a monitor (config/monitors.py): its URL, the URL's token, its access token and the
  values of its secret-looking headers.

Each secret is masked in every spelling rclone or a JSON encoder gives it (``quoting``).
A known connection string is shown with all its secret-looking values masked, however
short. Secrets shorter than ``MIN_SECRET`` characters, ``true`` and ``false`` are masked
only there: masking them in all text would garble it and protect nothing. Last, URL
passwords, ``key=value`` pairs with a secret-looking key, bearer tokens and the
credentials of an ``Authorization:`` header are masked wherever they appear, to catch
secrets that the config does not hold.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from mqtt_backup.redaction.connection_string import Param, RemoteSyntaxError, loose_params, parse
from mqtt_backup.redaction.literals import Literals
from mqtt_backup.redaction.quoting import ENCODERS, spellings

if TYPE_CHECKING:  # config checks paths with engine.locations, which masks with this module
    from mqtt_backup.config.models import AppConfig

MASK = "***"
# A key or flag name containing one of these words holds a secret.
SECRET_WORDS = (
    "pass",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "sas",
    "sig",
    "grant",
    "cookie",
    "bearer",
    "session",
    "private",
    "2fa",
)
MIN_SECRET = 4
LONG_VALUE = 16
_NOT_SECRETS = frozenset({"true", "false"})
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")

# Secrets the config does not hold, in text: a URL's password, a secret-looking
# key=value (quoted as in a connection string, possibly escaped), a bearer token, the
# credentials of an Authorization header (as rclone --dump auth prints it).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*):[^\s/]*@")
_PARAM = re.compile(
    r"(?<![0-9A-Za-z_.-])([0-9A-Za-z_.]+)="
    r"(?:'(?:[^']|'')*'?|(\\*)\"(?:\2\"\2\"|(?!\2\").)*(?:\2\")?|[^\s,:'\"\\&]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_AUTHORIZATION = re.compile(r"(?i)\b((?:proxy-)?authorization:\s*(?:[a-z]+\s+)?)[^\s\"\\]{4,}")


def is_secret_name(name: str) -> bool:
    """True for a key, flag or variable name that holds a secret (``pass``, ``sas_url``, …)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


@dataclass(frozen=True, slots=True)
class Secrets:
    """Strings to mask anywhere, and connection strings to show with their values masked."""

    values: frozenset[str] = frozenset()
    remotes: frozenset[str] = frozenset()

    def __or__(self, other: Secrets) -> Secrets:
        return Secrets(self.values | other.values, self.remotes | other.remotes)


def _url_secrets(value: str) -> set[str]:
    """A URL's password (also percent-decoded) and its secret-looking query values."""
    if not _URL.match(value):
        return set()
    try:
        url = urlsplit(value)
        password = url.password
    except ValueError:
        return set()
    found = {password, unquote(password)} if password else set()
    for key, item in parse_qsl(url.query, keep_blank_values=False):
        if is_secret_name(key):
            found.add(item)
    return found


def _json_secrets(value: str, *, secret: bool, long_values: bool) -> set[str]:
    """The string leaves of a JSON value that are secrets by these rules."""
    if not value.lstrip().startswith(("{", "[")):
        return set()
    try:
        data = json.loads(value)
    except ValueError:
        return set()
    found: set[str] = set()
    todo: list[tuple[object, bool]] = [(data, secret)]
    while todo:
        node, inherited = todo.pop()
        if isinstance(node, dict):
            todo += [(v, inherited or is_secret_name(str(k))) for k, v in node.items()]
        elif isinstance(node, list):
            todo += [(v, inherited) for v in node]
        elif isinstance(node, str):
            found |= value_secrets(node, secret=inherited, long_values=long_values)
    return found


def value_secrets(value: str, *, secret: bool, long_values: bool) -> set[str]:
    """What of one value to mask: all of it if ``secret`` (or long), and its inner secrets."""
    found = _url_secrets(value) | _json_secrets(value, secret=secret, long_values=long_values)
    address = _URL.match(value) or _HOST.fullmatch(value)
    if secret or (long_values and len(value) >= LONG_VALUE and not address):
        found.add(value)
    return found


def _param_secrets(param: Param) -> set[str]:
    found = value_secrets(param.value, secret=is_secret_name(param.key), long_values=True)
    # As quoted in a connection string: by the user, or by rclone, which writes a remote
    # back with every value in '…' and each ' doubled.
    return found | {s.replace(q, q * 2) for s in found for q in "'\"" if q in s}


def _params(remote: str) -> tuple[Param, ...]:
    try:
        return parse(remote).params
    except RemoteSyntaxError:
        return tuple(loose_params(remote))


def remote_secrets(remote: str) -> Secrets:
    """The secrets written into an rclone remote, and the remote itself to mask in place."""
    found: set[str] = set()
    # Also what only looks like a parameter: rclone reads an unquoted "endpoint=http://h:9,…"
    # as ending at the first ":", and the rest becomes the path, secrets and all.
    for param in (*_params(remote), *loose_params(remote)):
        found |= _param_secrets(param)
    return Secrets(frozenset(found), frozenset({remote}) if found else frozenset())


def masked_remote(remote: str) -> str:
    """``remote`` with the values of its secret-looking (and long) parameters masked."""
    out, cursor = [], 0
    for param in _params(remote):
        if not param.written or param.start < cursor:
            continue
        secret = value_secrets(param.value, secret=is_secret_name(param.key), long_values=True)
        if param.value in secret:
            masked = MASK
        else:
            masked = param.written
            for inner in sorted(_param_secrets(param), key=len, reverse=True):
                masked = masked.replace(inner, MASK)
        out += [remote[cursor : param.start], masked]
        cursor = param.start + len(param.written)
    return "".join(out) + remote[cursor:]


def _header_secrets(value: str) -> set[str]:
    """``Authorization: Bearer X`` gives ``Bearer X`` and ``X``."""
    name, sep, rest = value.partition(":")
    if not sep:
        name, sep, rest = value.partition(",")
    rest = rest.strip()
    if not (sep and rest and is_secret_name(name)):
        return set()
    return {rest, rest.split()[-1]}


def flag_secrets(args: Sequence[str]) -> Secrets:
    """Values given to secret-looking rclone flags (``--x-pass V`` or ``--x-pass=V``)."""
    found: set[str] = set()
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                continue  # a switch, or a flag whose value is missing
            value = args[i + 1]
        found |= value_secrets(value, secret=is_secret_name(name), long_values=False)
        if "header" in name:
            found |= _header_secrets(value)
    return Secrets(frozenset(found))


def environ_secrets(environ: Mapping[str, str]) -> Secrets:
    """Values of ``RCLONE_…`` variables with secret-looking names; rclone logs them at -vv."""
    found: set[str] = set()
    for name, value in environ.items():
        if name.startswith("RCLONE_"):
            secret = is_secret_name(name.removeprefix("RCLONE_"))
            found |= value_secrets(value, secret=secret, long_values=False)
    return Secrets(frozenset(found))


def config_secrets(config: AppConfig, environ: Mapping[str, str] | None = None) -> Secrets:
    """Every secret the config (and rclone's environment) holds."""
    secrets = environ_secrets(os.environ if environ is None else environ)
    secrets |= flag_secrets(config.rclone.extra_args)
    if config.mqtt is not None:
        try:
            password = config.mqtt.resolved_password()
        except OSError:
            password = None
        if password:
            secrets |= Secrets(frozenset({password}))
    for job in config.jobs.values():
        secrets |= remote_secrets(job.source) | remote_secrets(job.destination)
        secrets |= flag_secrets(job.extra_args)
    for entry in [*config.monitors, *(e for job in config.jobs.values() for e in job.monitors)]:
        secrets |= Secrets(frozenset(entry.monitor.secret_values()))
    # A hook's arguments too (``--password X``): its output and errors are shown and kept.
    for hooks in (config.hooks, *(job.hooks for job in config.jobs.values())):
        for hook in hooks.all():
            secrets |= flag_secrets(hook.run)
    return secrets


def _maskable(value: str) -> bool:
    return len(value) >= MIN_SECRET and value.lower() not in _NOT_SECRETS


class Masker:
    """Masks a set of secrets in text, in every spelling."""

    def __init__(self, secrets: Secrets) -> None:
        self._swaps: dict[str, str] = {}
        for remote in secrets.remotes:
            try:
                parsed = parse(remote)
                head = f"{parsed.config_string}:" if parsed.params else remote
            except RemoteSyntaxError:
                head = remote
            # The part before the path: rclone also writes it with other paths after it.
            masked = masked_remote(head)
            if masked != head:
                self._swaps |= {encode(head): encode(masked) for encode in ENCODERS}
        self._remotes = Literals(self._swaps)
        self._values = Literals(
            form for value in secrets.values if _maskable(value) for form in spellings(value)
        )

    def mask(self, text: str) -> str:
        if self._remotes:
            text = self._remotes.replace(text, self._swaps)
        if self._values:
            text = self._values.mask(text, MASK)
        return mask_patterns(text)


def _masked_param(match: re.Match[str]) -> str:
    key = match.group(1)
    return f"{key}={MASK}" if is_secret_name(key) else match.group()


def mask_patterns(text: str) -> str:
    """``text`` with URL passwords, secret-looking ``key=value`` pairs and tokens masked."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _PARAM.sub(_masked_param, text)
    text = _AUTHORIZATION.sub(rf"\1{MASK}", text)
    return _BEARER.sub(rf"\1{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks every log record, whoever logged it; ``add`` teaches it more secrets."""

    def __init__(self, secrets: Secrets | None = None) -> None:
        super().__init__()
        self._secrets = secrets or Secrets()
        self._masker = Masker(self._secrets)

    def add(self, secrets: Secrets) -> None:
        self._secrets |= secrets
        self._masker = Masker(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        masker = self._masker
        message = record.getMessage()
        masked = masker.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = masker.mask(record.exc_text)
        return True
