"""``mqtt-backup`` command line: parse arguments, map outcomes to exit codes, print errors."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mqtt_backup import __version__
from mqtt_backup.config.loader import (
    at_line,
    config_path,
    line_of,
    load_config,
    load_config_and_lines,
)
from mqtt_backup.config.models import AppConfig
from mqtt_backup.config.supervisor import (
    SupervisorError,
    addon_config,
    addon_log_level,
    under_supervisor,
    write_dashboard,
    write_starter_config,
)
from mqtt_backup.errors import ConfigError, JobBusy, MqttBackupError
from mqtt_backup.jobs.history import History, RunRecord
from mqtt_backup.jobs.locks import is_held
from mqtt_backup.jobs.state import JobState, initial, interrupted, iso, newer, utcnow
from mqtt_backup.logs import setup as setup_logging
from mqtt_backup.redaction.secrets import config_secrets

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A before hook skipped the run: EX_TEMPFAIL, the code the hook itself exits with to skip.
EXIT_SKIPPED = 75
NO_WIDTH_LIMIT = 10_000
# Commands that talk to the broker, or describe its entities: under the Home Assistant
# Supervisor, a config without a broker host gets the Supervisor's broker for them.
BROKER_COMMANDS = frozenset({"serve", "run-job", "status", "dashboard"})
# Commands that may take a validated config from the cache (config/cache.py): they run no
# schedules, and starting fast is what they are for.
CACHED_COMMANDS = frozenset({"run-job"})
ADDON_DASHBOARD = "dashboard.yaml"

logger = logging.getLogger("mqtt_backup")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-backup",
        description="Scheduled rclone backups whose state is published to MQTT and Home Assistant.",
    )
    parser.add_argument(
        "-c",
        "--config",
        help="config file (default: $MQTT_BACKUP_CONFIG, else config/mqtt-backup.yaml)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO, or the Home Assistant add-on's log_level option",
    )
    parser.add_argument("--version", action="version", version=f"mqtt-backup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("validate", help="check the config; list every error")
    sub.add_parser("serve", help="run the daemon: schedules, commands, publishing")
    run = sub.add_parser("run-job", help="run one job now, with a live progress bar")
    run.add_argument("job", metavar="JOB")
    run.add_argument("--dry-run", action="store_true", help="transfer and delete nothing")
    run.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="after the run, write the job's metrics there for node_exporter's textfile "
        "collector (name it *.prom)",
    )
    status = sub.add_parser("status", help="every job's last state")
    status.add_argument("--json", action="store_true", help="print JSON")
    hist = sub.add_parser("history", help="past runs of a job")
    hist.add_argument("job", metavar="JOB")
    hist.add_argument("--limit", type=int, default=20, help="how many runs (default: 20)")
    hist.add_argument("--hooks", action="store_true", help="also print each hook's output")
    sub.add_parser("healthcheck", help="exit 0 while a serve of this config is alive")
    dash = sub.add_parser("dashboard", help="print a Home Assistant dashboard view of the jobs")
    dash.add_argument("--jobs", metavar="A,B", help="only these jobs, in this order")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = config_path(args.config)
    if args.command == "validate":
        return validate(path)
    if args.command == "serve" and write_starter_config(path):
        print(f"{path}: written with no jobs yet; add jobs, then restart", file=sys.stderr)
    try:
        if args.command in CACHED_COMMANDS:
            from mqtt_backup.config import cache

            config = cache.load(path)[0]
        else:
            config = load_config(path, scheduling=args.command == "serve")
    except ConfigError as exc:
        return _invalid(path, exc.errors)
    level = args.log_level or addon_log_level() or "INFO"
    redactor = setup_logging(level, config_secrets(config))
    try:
        config = _as_addon(path, args.command, config)
    except SupervisorError as exc:
        print(f"mqtt-backup: {exc}", file=sys.stderr)
        return EXIT_USAGE
    redactor.add(config_secrets(config))
    try:
        if args.command == "run-job":
            return run_job(
                config, args.job, dry_run=args.dry_run, metrics_file=args.metrics_file
            )
        if args.command == "status":
            return show_status(config, as_json=args.json)
        if args.command == "history":
            return show_history(config, args.job, args.limit, hook_output=args.hooks)
        if args.command == "dashboard":
            return print_dashboard(config, args.jobs)
        from mqtt_backup import daemon

        if args.command == "serve":
            return daemon.serve(path, config, redactor)
        return daemon.healthcheck(config)
    except MqttBackupError as exc:
        print(f"mqtt-backup: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _invalid(path: Path, errors: list[str]) -> int:
    print(f"{path}: invalid configuration:", file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return EXIT_USAGE


def validate(path: Path) -> int:
    """The file, then what it names: rclone, its config, TLS and password files, sources."""
    from mqtt_backup.config import preflight

    try:
        config, lines = load_config_and_lines(path, scheduling=True)
    except ConfigError as exc:
        return _invalid(path, exc.errors)
    version, findings = preflight.check(config)
    findings.sort(key=lambda f: line_of(f.key, lines) or 0)
    errors = [at_line(f.key, f.message, lines) for f in findings if f.error]
    if errors:
        _invalid(path, errors)
    for finding in findings:
        if not finding.error:
            warning = at_line(finding.key, finding.message, lines)
            print(f"{path}: warning: {warning}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    jobs = ", ".join(config.jobs) or "none"
    rclone = ".".join(map(str, version)) if version else "?"
    print(f"{path}: OK, {len(config.jobs)} job(s): {jobs}; rclone {rclone}")
    return EXIT_OK


def _as_addon(path: Path, command: str, config: AppConfig) -> AppConfig:
    """Under the Home Assistant Supervisor: its broker and the add-on's folders (else as is)."""
    config = addon_config(config, broker=command in BROKER_COMMANDS)
    if command == "serve" and under_supervisor(os.environ):
        # An add-on user has no shell to run `dashboard` in, but can open this file.
        write_dashboard(path.parent / ADDON_DASHBOARD, config)
    return config


def entry() -> NoReturn:
    """The ``mqtt-backup`` command: main(), then exit without the interpreter's teardown."""
    code = main()
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # let the interpreter wait for them, as it always does
    # By now every file, database and connection is closed. Tearing down ~350 modules
    # would add ~30 ms to each run-job, which a cron line calling rclone does not pay.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _unknown_job(config: AppConfig, job_id: str) -> int:
    known = ", ".join(config.jobs) or "none configured"
    print(f"mqtt-backup: unknown job {job_id!r} (jobs: {known})", file=sys.stderr)
    return EXIT_USAGE


def run_job(
    config: AppConfig, job_id: str, *, dry_run: bool = False, metrics_file: Path | None = None
) -> int:
    """Run one job in the foreground; print its summary; the exit code says how it ended."""
    from mqtt_backup.runtime import run_once
    from mqtt_backup.sinks.terminal import summary

    if job_id not in config.jobs:
        return _unknown_job(config, job_id)
    if metrics_file is not None and not metrics_file.parent.is_dir():
        # Said before the run: an hour-long backup should not end in "cannot write".
        folder = metrics_file.parent
        print(f"mqtt-backup: --metrics-file: {folder} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        final = run_once(config, job_id, dry_run=dry_run)
    except JobBusy as exc:
        print(f"mqtt-backup: {exc}; not started", file=sys.stderr)
        return EXIT_FAILED
    print(summary(final))
    if metrics_file is not None:
        _write_metrics(metrics_file, final, config)
    if final.status == "skipped":
        return EXIT_SKIPPED
    return EXIT_OK if final.status == "completed" else EXIT_FAILED


def _write_metrics(path: Path, final: JobState, config: AppConfig) -> None:
    """The run's metrics for node_exporter; a failure is said, and the run's exit code kept."""
    from mqtt_backup.metrics import write_textfile

    try:
        write_textfile(path, final, config)
    except MqttBackupError as exc:
        print(f"mqtt-backup: {exc}", file=sys.stderr)


def show_status(config: AppConfig, *, as_json: bool) -> int:
    """Every configured job's last state: from the broker when it answers, else local history.

    Reads only: a run left ``running`` by a process that is gone is shown ``interrupted``
    (what the next serve or run records), but nothing is written.
    """
    with History(config.state_dir) as history:
        states = history.last_states()
        local_running = {r.run_id for r in history.running_runs()}
        enabled = {
            job: bool(history.setting(job, "enabled", j.enabled)) for job, j in config.jobs.items()
        }
    source = "local history"
    if config.mqtt is not None:
        from mqtt_backup.errors import MqttError
        from mqtt_backup.mqtt.client import read_retained_states

        try:
            retained = read_retained_states(config, timeout=3.0)
        except MqttError as exc:
            logger.warning("%s", exc)
            retained = None
        if retained is not None:
            # The broker knows runs of other hosts' processes; history knows the runs that
            # ended while the broker was away. The newer state wins.
            source = "broker"
            for job_id, state in retained.items():
                local = states.get(job_id)
                states[job_id] = state if local is None else newer(state, local)
                if states[job_id] is local:
                    source = "broker and local history"
    shown: dict[str, JobState] = {}
    for job_id, job in config.jobs.items():
        state = states.get(job_id) or initial(
            job_id, job.name or job_id, job.deletion.mode, enabled[job_id]
        )
        shown[job_id] = _settled(config, state, local_running)
    if as_json:
        print(json.dumps({job: s.model_dump(mode="json") for job, s in shown.items()}, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mqtt-backup {config.instance} (from {source})")
    for column in ("job", "status", "progress", "last success", "next run", "error"):
        table.add_column(column)
    for job_id, s in shown.items():
        if s.run_id is None and s.status == "idle":
            table.add_row(job_id, "never run", "", "", "", "")
            continue
        progress = f"{s.phase} {s.percent:.0f}%" if s.status == "running" else ""
        table.add_row(
            job_id,
            s.status,
            progress,
            iso(s.last_success_at) or "never",
            iso(s.next_run_at) or "",
            s.error or "",
        )
    # Into a pipe or a file, nothing is cut to fit an 80-column guess: no terminal, no limit.
    console = Console() if sys.stdout.isatty() else Console(width=NO_WIDTH_LIMIT)
    console.print(table)
    return EXIT_OK


def _settled(config: AppConfig, state: JobState, local_running: set[str]) -> JobState:
    """``interrupted`` for an active run of this state_dir whose process holds no job lock."""
    if not state.is_active or is_held(config.state_dir, state.job_id):
        return state
    if state.status == "running" and state.run_id not in local_running:
        return state  # a run this host has no record of (another host's): nothing to check
    gone = interrupted(state, utcnow(), "the process running this job stopped unexpectedly")
    return gone.model_copy(update={"finished_at": None})  # unknown: noticed now, ended earlier


def print_dashboard(config: AppConfig, jobs: str | None) -> int:
    """Print the Lovelace view of the jobs (YAML), to paste into a dashboard."""
    from mqtt_backup.homeassistant.dashboard import (
        DashboardError,
        dashboard_view,
        render,
        select_jobs,
    )

    try:
        view = dashboard_view(config, select_jobs(config, jobs))
    except DashboardError as exc:
        print(f"mqtt-backup: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(render(view), end="")
    return EXIT_OK


def _kept(run: RunRecord) -> str:
    """The kept count, then each reason with its first file names."""
    lines = [str(run.files_kept)]
    for reason, detail in sorted(run.kept_reasons().items()):
        files = detail.get("files") or []
        names = ", ".join(str(name) for name in files) if isinstance(files, list) else ""
        lines.append(f"{reason} {detail.get('count')}" + (f": {names}" if names else ""))
    return "\n".join(lines)


def _hooks(run: RunRecord) -> str:
    """One line per hook that ran: which, and how it ended."""
    return "\n".join(str(hook.get("sentence", "")) for hook in run.hook_records())


def show_history(config: AppConfig, job_id: str, limit: int, *, hook_output: bool = False) -> int:
    if job_id not in config.jobs:
        return _unknown_job(config, job_id)
    with History(config.state_dir) as history:
        runs = history.runs(job_id, limit)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"runs of {job_id}")
    for column in ("started", "trigger", "status", "files", "bytes", "deleted", "kept"):
        table.add_column(column)
    table.add_column("hooks")
    table.add_column("error")
    for r in runs:
        table.add_row(
            r.started_at,
            r.trigger + (" (dry run)" if r.dry_run else ""),
            r.status,
            str(r.files_transferred),
            str(r.bytes_transferred),
            str(r.files_deleted),
            _kept(r),
            # Text, not markup: a program's output may hold anything, brackets included.
            Text(_hooks(r)),
            Text(r.error or ""),
        )
    Console(width=160).print(table)
    if hook_output:
        _print_hook_output(runs)
    if not runs:
        print(f"{job_id} has not run yet")
    return EXIT_OK


def _print_hook_output(runs: list[RunRecord]) -> None:
    """Each hook's output as history keeps it (masked, the end of it), newest run first."""
    for run in runs:
        for hook in run.hook_records():
            print(f"\n== run {run.run_id} ({run.started_at}): {hook.get('sentence', '')}")
            dropped = hook.get("dropped")
            if isinstance(dropped, int) and dropped > 0:
                print(f"[{dropped} bytes of earlier output not kept]")
            output = str(hook.get("output") or "")
            print(output if output.endswith("\n") or not output else output + "\n", end="")
