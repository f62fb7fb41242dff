"""Pure: a Home Assistant dashboard view (Lovelace YAML) for the configured jobs.

Every entity id in it comes from ``discovery.job_entity_ids``, the same function that pins
the ids in the discovery messages, so the view names exactly the entities Home Assistant
creates. The texts are Home Assistant templates rendered by its markdown card: they show
sizes in readable units, times relative to now, and any status they do not know by name.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from mqtt_backup.config.models import AppConfig
from mqtt_backup.errors import MqttBackupError
from mqtt_backup.homeassistant.discovery import job_entity_ids
from mqtt_backup.jobs.state import HOOK_PHASES, PHASE_LABELS, Status

HISTORY_HOURS = 48
# Job sections side by side on a wide screen; the overview spans them all.
COLUMNS = 3

# Home Assistant's own success, error, warning and info colours. The markdown card keeps
# <font color> but drops style attributes, so no theme variable can be used here.
GREEN, RED, ORANGE, BLUE, GREY = "#4caf50", "#db4437", "#ffa600", "#039be5", "#9e9e9e"
# Status → icon and colour in the overview; tests check every status has one. A status
# missing here (one a newer version publishes) is shown by its name with a neutral icon;
# "unavailable" is what Home Assistant shows while the service is offline.
STATUS_LOOK: dict[Status | Literal["unavailable"], tuple[str, str]] = {
    "completed": ("mdi:check-circle", GREEN),
    "failed": ("mdi:alert-circle", RED),
    "interrupted": ("mdi:alert-circle", RED),
    "cancelled": ("mdi:stop-circle", ORANGE),
    "running": ("mdi:progress-upload", BLUE),
    "queued": ("mdi:timer-sand", BLUE),
    "skipped": ("mdi:skip-next-circle", GREY),
    "idle": ("mdi:circle-outline", GREY),
    "unavailable": ("mdi:lan-disconnect", RED),
}
OTHER_LOOK = ("mdi:help-circle", GREY)


class DashboardError(MqttBackupError):
    """The view cannot be made: no MQTT, discovery off, or an unknown job was asked for."""


def select_jobs(config: AppConfig, wanted: str | None) -> list[str]:
    """The jobs of ``--jobs a,b`` in that order, or every job in config order."""
    if not wanted:
        return list(config.jobs)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in config.jobs]
    if unknown:
        known = ", ".join(config.jobs) or "none configured"
        raise DashboardError(f"unknown job(s) {', '.join(unknown)} (jobs: {known})")
    return list(dict.fromkeys(names))


def dashboard_view(config: AppConfig, job_ids: Sequence[str]) -> dict[str, Any]:
    """A Lovelace view: an overview table of every job, then one card per job."""
    if config.mqtt is None:
        raise DashboardError(
            "no mqtt: section in the config, so Home Assistant has no entities for these jobs"
        )
    if not config.mqtt.discovery:
        raise DashboardError("mqtt.discovery is off, so Home Assistant has no entities to show")
    ids = {job: job_entity_ids(config, job) for job in job_ids}
    overview = {
        "type": "grid",
        "column_span": COLUMNS,
        "cards": [
            _heading("Backups", "mdi:backup-restore") | {"grid_options": {"columns": "full"}},
            _overview(config, ids),
        ],
    }
    return {
        "title": "Backups",
        "path": "backups",
        "icon": "mdi:backup-restore",
        "type": "sections",
        "max_columns": COLUMNS,
        "sections": [overview] + [_job_section(config, job, ids[job]) for job in job_ids],
    }


def _heading(text: str, icon: str) -> dict[str, Any]:
    return {"type": "heading", "heading": text, "icon": icon}


def render(view: dict[str, Any]) -> str:
    """The view as YAML, keys in the order written, multi-line texts as literal blocks."""
    return yaml.dump(view, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)


class _Dumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _literal)


# The overview: one table, a line per job. An HTML table, not a markdown one: it can span the
# card's width. The row templates use expressions and macros only, never a ``{%- … -%}``
# that would swallow the line break between two rows (which a markdown table depends on).
OVERVIEW_COLUMNS = ("Job", "Status", "Last success", "Next run", "Health")

_MACROS = """\
{%- set looks = LOOKS -%}
{%- set hooks = HOOKS -%}
{%- macro status(e, progress, phase) -%}
{%- set s = states(e) -%}{%- set look = looks[s] if s in looks else OTHER -%}
<font color="{{ look[1] }}"><ha-icon icon="{{ look[0] }}"></ha-icon></font> {{ s }}
{%- if s == 'running' and states(phase) in hooks %} ({{ hooks[states(phase)] }})
{%- elif s == 'running' and progress %} {{ states(progress) | float(0) | round(0) | int }} %
{%- endif -%}
{%- endmacro -%}
{%- macro ago(e) -%}
{%- if has_value(e) -%}{{ time_since(states(e) | as_datetime) }} ago{%- else -%}never{%- endif -%}
{%- endmacro -%}
{%- macro next_run(e, switch) -%}
{%- if switch and is_state(switch, 'off') -%}paused
{%- elif has_value(e) and (states(e) | as_datetime) > now() -%}
in {{ time_until(states(e) | as_datetime) }}
{%- elif has_value(e) -%}due
{%- else -%}—{%- endif -%}
{%- endmacro -%}
{%- macro health(problem, overdue) -%}
{%- set p = is_state(problem, 'on') -%}{%- set o = is_state(overdue, 'on') -%}
{%- if p -%}<font color="RED"><ha-icon icon="mdi:alert"></ha-icon></font> problem
{%- endif -%}
{%- if p and o %}, {% endif -%}
{%- if o -%}<font color="ORANGE"><ha-icon icon="mdi:calendar-alert"></ha-icon></font> overdue
{%- endif -%}
{%- if not p and not o -%}<font color="GREEN"><ha-icon icon="mdi:check"></ha-icon></font> OK
{%- endif -%}
{%- endmacro -%}
"""


def _jinja_looks() -> str:
    pairs = ", ".join(f"'{s}': ['{icon}', '{color}']" for s, (icon, color) in STATUS_LOOK.items())
    return "{" + pairs + "}"


def _jinja_hook_labels() -> str:
    """While a hook runs there is no percentage to show: the overview names the hook instead."""
    pairs = ", ".join(f"'{phase}': '{PHASE_LABELS[phase]}'" for phase in HOOK_PHASES.values())
    return "{" + pairs + "}"


def _overview(config: AppConfig, ids: dict[str, dict[str, str]]) -> dict[str, Any]:
    macros = (
        _MACROS.replace("LOOKS", _jinja_looks())
        .replace("HOOKS", _jinja_hook_labels())
        .replace("OTHER", f"['{OTHER_LOOK[0]}', '{OTHER_LOOK[1]}']")
        .replace("RED", RED)
        .replace("ORANGE", ORANGE)
        .replace("GREEN", GREEN)
    )
    header = "".join(f'<th align="left">{title}</th>' for title in OVERVIEW_COLUMNS)
    lines = ['<table width="100%">', f"<tr>{header}</tr>"]
    for job, e in ids.items():
        switch = f"'{e['schedule_enabled']}'" if "schedule_enabled" in e else "none"
        if config.jobs[job].schedule is None:
            next_cell = "manual"
        else:
            next_cell = f"{{{{ next_run('{e['next_run']}', {switch}) }}}}"
        cells = [
            _cell_text(config.display_name(job)),
            f"{{{{ status('{e['status']}', '{e['progress']}', '{e['phase']}') }}}}",
            f"{{{{ ago('{e['last_success']}') }}}}",
            next_cell,
            f"{{{{ health('{e['problem']}', '{e['overdue']}') }}}}",
        ]
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines.append("</table>")
    return {
        "type": "markdown",
        "content": macros + "\n".join(lines) + "\n",
        # A card fills one column of its section unless told otherwise.
        "grid_options": {"columns": "full"},
    }


def _cell_text(text: str) -> str:
    """A job name as HTML text that no template tag can start in."""
    text = html.escape(text)
    return text.replace("{", "&#123;").replace("}", "&#125;")


# One card per job: the interactive rows (switch, buttons) in an entities card, the sizes
# as readable text, and the history of its status.

_SIZE_MACRO = """\
{%- macro size(e) -%}
{%- set n = states(e) | float(-1) -%}
{%- if n < 0 -%}—{%- else -%}
{%- set ns = namespace(n=n, unit='B') -%}
{%- for unit in ['kB', 'MB', 'GB', 'TB', 'PB'] -%}
{%- if ns.n >= 1000 -%}{%- set ns.n = ns.n / 1000 -%}{%- set ns.unit = unit -%}{%- endif -%}
{%- endfor -%}
{{ ns.n | round(1) if ns.unit != 'B' else ns.n | int }} {{ ns.unit }}
{%- endif -%}
{%- endmacro -%}
"""


def _job_section(config: AppConfig, job: str, e: dict[str, str]) -> dict[str, Any]:
    job_config = config.jobs[job]
    name = config.display_name(job)
    running = [{"entity": e["status"], "state": "running"}]
    rows: list[Any] = [
        {"entity": e["status"], "name": "Status"},
        {
            "type": "conditional",
            "conditions": running,
            "row": {"entity": e["phase"], "name": "Phase"},
        },
        {
            "type": "conditional",
            "conditions": running,
            "row": {"entity": e["progress"], "name": "Progress"},
        },
        {"entity": e["last_success"], "name": "Last success", "format": "relative"},
    ]
    if job_config.schedule is not None:
        rows.append({"entity": e["next_run"], "name": "Next run", "format": "relative"})
    rows += [
        {"entity": e["problem"], "name": "Problem"},
        {"entity": e["overdue"], "name": "Overdue"},
    ]
    if "schedule_enabled" in e:
        rows.append({"entity": e["schedule_enabled"], "name": "Schedule"})
    if "run" in e:
        rows.append(
            {
                "type": "buttons",
                "entities": [
                    {"entity": e["run"], "name": "Run now", "icon": "mdi:play"},
                    {"entity": e["cancel"], "name": "Cancel", "icon": "mdi:stop"},
                ],
            }
        )
    sizes = [f"Transferred: **{{{{ size('{e['transferred']}') }}}}**"]
    if job_config.deletion.mode == "verify_then_delete":
        sizes.append(
            f"Space freed: **{{{{ size('{e['space_freed']}') }}}}** "
            f"({{{{ states('{e['files_deleted']}') | int(0) }}}} files deleted)"
        )
    sizes_card = {
        "type": "markdown",
        "content": _SIZE_MACRO + "  \n".join(sizes) + "\n",
    }
    history = {
        "type": "history-graph",
        "title": f"Last {HISTORY_HOURS} hours",
        "hours_to_show": HISTORY_HOURS,
        "entities": [
            {"entity": e["status"], "name": "Status"},
            {"entity": e["problem"], "name": "Problem"},
        ],
    }
    entities = {"type": "entities", "show_header_toggle": False, "entities": rows}
    return {
        "type": "grid",
        "cards": [_heading(name, "mdi:folder-sync"), entities, sizes_card, history],
    }
