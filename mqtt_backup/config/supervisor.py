"""Running as a Home Assistant add-on: the broker from the Supervisor, the add-on's folders.

The Supervisor starts every add-on with ``SUPERVISOR_TOKEN`` set; without it nothing here
changes a thing. With it, a config that names no broker host (no ``mqtt:`` section, or one
without ``host``) gets the broker, port, TLS switch, user name and password that the
Supervisor's services API hands to add-ons that declare ``services: [mqtt:need]``. Keys
written under ``mqtt:`` win; a ``host`` of its own means the Supervisor is not asked.

A config without ``http:`` gets the endpoint the add-on's watchdog asks, on port 8099 of
the add-on's own address in Home Assistant's internal network (addon/config.yaml).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from mqtt_backup.config.models import AppConfig, HttpConfig, MqttConfig, TlsConfig
from mqtt_backup.errors import MqttBackupError

logger = logging.getLogger(__name__)

TOKEN_ENV = "SUPERVISOR_TOKEN"  # noqa: S105 - a variable name
URL_ENV = "MQTT_BACKUP_SUPERVISOR_URL"
DEFAULT_URL = "http://supervisor"
# The add-on's private folder: kept across updates and restarts, part of its backups.
ADDON_STATE_DIR = Path("/data")
# Where the Supervisor writes the options set on the add-on's Configuration tab.
OPTIONS_PATH = ADDON_STATE_DIR / "options.json"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TIMEOUT = 10.0
# The port of addon/config.yaml's watchdog URL. The add-on's address is reachable only on
# Home Assistant's internal network unless the user maps the port to the host.
ADDON_HTTP_PORT = 8099
ADDON_HTTP = HttpConfig(listen=f"0.0.0.0:{ADDON_HTTP_PORT}", allow_remote=True)
_CREDENTIALS = ("username", "password", "password_file")

STARTER = """\
# mqtt-backup, running as a Home Assistant add-on. The MQTT broker comes from Home
# Assistant (the Mosquitto broker add-on): no mqtt: section is needed. History and locks
# are kept in the add-on's own storage. Put rclone's remotes in rclone/rclone.conf next to
# this file. Folders: /backup, /share and /media are Home Assistant's, /config is this
# folder. Restart the add-on after editing; its log lists any error by key and line.
#
# jobs:
#   ha-backups:
#     name: Home Assistant backups
#     source: /backup
#     destination: nas:backups/home-assistant   # a remote from rclone/rclone.conf
#     operation: copy
#     schedule: "0 4 * * *"
jobs: {}
"""


class SupervisorError(MqttBackupError):
    """The Supervisor could not tell the broker; the message says what to do."""


@dataclass(frozen=True)
class BrokerService:
    """What the Supervisor's services API says about the MQTT broker."""

    host: str
    port: int
    ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def under_supervisor(environ: Mapping[str, str]) -> bool:
    return bool(environ.get(TOKEN_ENV))


def needs_broker(config: AppConfig) -> bool:
    """True when the config names no broker host: no ``mqtt:`` section, or one without host."""
    return config.mqtt is None or "host" not in config.mqtt.model_fields_set


def parse_service(status: int, body: bytes) -> BrokerService:
    """The broker from an answer to ``GET /services/mqtt``; SupervisorError for anything else."""
    message = _message(body)
    if status in (401, 403):
        raise SupervisorError(
            f"the Home Assistant Supervisor refused to name the MQTT broker (HTTP {status}"
            f"{': ' + message if message else ''}); restart the add-on, or set mqtt.host"
        )
    if status in (400, 404) or (status == 200 and not _data(body)):
        raise SupervisorError(
            "Home Assistant has no MQTT broker for add-ons: install and start the Mosquitto "
            "broker add-on, or set mqtt.host to a broker of your own"
        )
    if status != 200:
        raise SupervisorError(
            f"the Home Assistant Supervisor answered HTTP {status}"
            f"{' (' + message + ')' if message else ''} when asked for the MQTT broker"
        )
    data = _data(body)
    host, port = data.get("host"), data.get("port")
    if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
        raise SupervisorError("the Home Assistant Supervisor named no usable MQTT host and port")
    username, password = data.get("username"), data.get("password")
    return BrokerService(
        host=host,
        port=port,
        ssl=data.get("ssl") is True,
        username=username if isinstance(username, str) and username else None,
        password=password if isinstance(password, str) and password else None,
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _data(body: bytes) -> dict[str, Any]:
    answer = _json(body)
    data = answer.get("data") if isinstance(answer, dict) else None
    return data if isinstance(data, dict) else {}


def _message(body: bytes) -> str:
    """The Supervisor's own short reason, when it gave one (never the data, which holds secrets)."""
    answer = _json(body)
    message = answer.get("message") if isinstance(answer, dict) else None
    if isinstance(message, str):
        return message.strip()[:200]
    return ""


def fetch_service(base_url: str, token: str, timeout: float = TIMEOUT) -> BrokerService:
    """Ask the Supervisor for the MQTT broker; SupervisorError when that fails in any way."""
    url = f"{base_url.rstrip('/')}/services/mqtt"
    if not url.startswith(("http://", "https://")):
        raise SupervisorError(f"{URL_ENV} must be an http:// or https:// address, not {base_url!r}")
    # Only an add-on asks: urllib.request brings http.client, email and ssl (~10 ms), which
    # every other start of mqtt-backup would pay for nothing.
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return parse_service(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return parse_service(exc.code, exc.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SupervisorError(
            f"cannot reach the Home Assistant Supervisor at {base_url} ({reason}) to ask for "
            "the MQTT broker"
        ) from None


def with_broker(config: AppConfig, service: BrokerService) -> AppConfig:
    """``config`` using the Supervisor's broker; keys set under ``mqtt:`` win.

    The user name and password come as a pair: when the config sets either (or a
    password_file), the Supervisor's credentials are not used at all, so a password in
    ``MQTT_BACKUP_MQTT_PASSWORD`` is never overridden.
    """
    mqtt = config.mqtt if config.mqtt is not None else MqttConfig()
    given = mqtt.model_fields_set
    update: dict[str, Any] = {"host": service.host}
    if "port" not in given:
        update["port"] = service.port
    if "tls" not in given and service.ssl:
        update["tls"] = TlsConfig()
    if not given & set(_CREDENTIALS):
        update["username"] = service.username
        update["password"] = SecretStr(service.password) if service.password else None
    return config.model_copy(update={"mqtt": mqtt.model_copy(update=update)})


def addon_config(
    config: AppConfig,
    *,
    broker: bool,
    environ: Mapping[str, str] = os.environ,
    fetch: Callable[[str, str], BrokerService] = fetch_service,
) -> AppConfig:
    """The config as the add-on runs it; unchanged outside the Supervisor.

    With ``broker``, a config without a broker host gets the Supervisor's broker. (The
    add-on's state goes to its storage through MQTT_BACKUP_STATE_DIR, which the add-on sets.)
    Raises SupervisorError.
    """
    if not under_supervisor(environ):
        return config
    if broker and needs_broker(config):
        service = fetch(environ.get(URL_ENV) or DEFAULT_URL, environ[TOKEN_ENV])
        config = with_broker(config, service)
        logger.info(
            "MQTT broker from Home Assistant: %s:%d%s%s",
            service.host,
            service.port,
            " (TLS)" if service.ssl else "",
            f" as {service.username}" if service.username else "",
        )
    return with_addon_http(config)


def with_addon_http(config: AppConfig) -> AppConfig:
    """``config`` with the endpoint the add-on's watchdog asks, unless it sets ``http`` itself."""
    if config.http is None:
        return config.model_copy(update={"http": ADDON_HTTP})
    host, port = config.http.address
    if port != ADDON_HTTP_PORT or ipaddress.ip_address(host).is_loopback:
        logger.warning(
            "http.listen %s does not answer the add-on's watchdog, which asks port %d of the "
            "add-on's address; with Watchdog on, Home Assistant would restart the add-on "
            "again and again: remove http: from the file, or listen on 0.0.0.0:%d",
            config.http.listen,
            ADDON_HTTP_PORT,
            ADDON_HTTP_PORT,
        )
    return config


def addon_log_level(
    environ: Mapping[str, str] = os.environ, path: Path = OPTIONS_PATH
) -> str | None:
    """The add-on's ``log_level`` option, upper-cased; None outside the Supervisor or unset."""
    if not under_supervisor(environ):
        return None
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    level = options.get("log_level") if isinstance(options, dict) else None
    if isinstance(level, str) and level.upper() in LOG_LEVELS:
        return level.upper()
    return None


def write_starter_config(path: Path, environ: Mapping[str, str] = os.environ) -> bool:
    """On an add-on's first start, a commented config with no jobs; True when written."""
    if not under_supervisor(environ) or path.exists() or not path.parent.is_dir():
        return False
    path.write_text(STARTER, encoding="utf-8")
    (path.parent / "rclone").mkdir(exist_ok=True)
    return True


def write_dashboard(path: Path, config: AppConfig) -> None:
    """Write the dashboard view of every job to ``path``; a failure is logged, not raised."""
    from mqtt_backup.homeassistant.dashboard import DashboardError, dashboard_view, render

    try:
        text = render(dashboard_view(config, list(config.jobs)))
        path.write_text(f"# Generated by mqtt-backup at each start; edits are lost.\n{text}")
    except (DashboardError, OSError) as exc:
        logger.warning("no dashboard written to %s: %s", path, exc)
        return
    logger.info("dashboard view of %d job(s) written to %s", len(config.jobs), path)
