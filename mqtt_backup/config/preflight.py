"""What ``validate`` checks beyond the file itself: rclone, the files it names, local sources."""

from __future__ import annotations

import configparser
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mqtt_backup.config.models import AppConfig, HooksConfig
from mqtt_backup.errors import RcloneError

# rclone's own test for "remote:path": a name of these characters, or ":backend,opts:".
_REMOTE = re.compile(r"^(?P<name>:?[\w.+@ -]+)(?:,[^:]*)?:")
_ENCRYPTED = "RCLONE_ENCRYPT_V0:"
MAX_RCLONE_CONFIG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: an error makes validate exit 2, a warning is only printed."""

    key: tuple[str, ...]
    message: str
    error: bool = True


def check(config: AppConfig) -> tuple[tuple[int, int, int] | None, list[Finding]]:
    """The rclone version found (None when it is unusable) and every finding."""
    version, findings = _rclone(config)
    findings += _rclone_config(config)
    findings += _sources(config)
    findings += _state_dir(config.state_dir)
    findings += _http(config)
    findings += _hooks(config)
    return version, findings


def _rclone(config: AppConfig) -> tuple[tuple[int, int, int] | None, list[Finding]]:
    from mqtt_backup.engine.process import rclone_version

    # The same cache as the runs use: validate then costs no rclone process either.
    work = config.state_dir / "work"
    try:
        version = rclone_version(config.rclone.binary, work if os.path.isdir(work) else None)
    except RcloneError as exc:
        return None, [Finding(("rclone", "binary"), str(exc))]
    return version, []


def local_path(remote: str) -> bool:
    """Whether rclone takes ``remote`` for a local path rather than ``name:path``."""
    return remote.startswith("/") or _REMOTE.match(remote) is None


def _remote_name(remote: str) -> str | None:
    found = _REMOTE.match(remote)
    if found is None or found.group("name").startswith(":"):
        return None  # local, or a connection string that needs no config section
    return found.group("name")


def _sources(config: AppConfig) -> list[Finding]:
    findings = []
    for job_id, job in config.jobs.items():
        key = ("jobs", job_id, "source")
        if not local_path(job.source):
            continue
        path = Path(job.source)
        if not path.is_absolute():
            findings.append(
                Finding(
                    key,
                    f"{job.source!r} is relative to the working directory of each run, which "
                    "cron, systemd and a shell set differently; write an absolute path",
                    error=False,
                )
            )
        elif not os.path.exists(path):  # unlike Path.exists, never raises (EACCES)
            deleting = job.deletion.mode == "verify_then_delete"
            findings.append(
                Finding(
                    key,
                    f"{job.source!r} does not exist"
                    + (
                        "; a verify_then_delete job must see its source (is it mounted?)"
                        if deleting
                        else "; runs fail until it does (is it mounted?)"
                    ),
                    error=deleting,
                )
            )
    return findings


def _rclone_config(config: AppConfig) -> list[Finding]:
    """The rclone config file exists, parses, and has the remotes the jobs name."""
    remotes = {
        (job_id, side): name
        for job_id, job in config.jobs.items()
        for side in ("source", "destination")
        if (name := _remote_name(getattr(job, side))) is not None
    }
    path = config.rclone.config_file
    named = path is not None
    if path is None:
        # Not named in the file: rclone's own choice. Only $RCLONE_CONFIG is certain enough
        # to check (the container image sets it), and only for the remotes it should hold.
        explicit = os.environ.get("RCLONE_CONFIG")
        if not explicit or not remotes:
            return []
        path = Path(explicit)
    key = ("rclone", "config_file") if named else ("rclone",)
    where = "" if named else " (named by $RCLONE_CONFIG)"
    try:
        if not path.is_file():
            return [Finding(key, f"{str(path)!r}{where} does not exist or is not a file", named)]
        if path.stat().st_size > MAX_RCLONE_CONFIG_BYTES:
            return [Finding(key, f"{str(path)!r}{where} is too large for an rclone config file")]
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [Finding(key, f"{str(path)!r}{where} cannot be read ({exc.strerror})", named)]
    except UnicodeDecodeError:
        return [Finding(key, f"{str(path)!r}{where} is not UTF-8 text; is it rclone's config?")]
    if _ENCRYPTED in text:
        return []  # only rclone, with the password, can read it
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        reason = str(exc).splitlines()[0]
        return [Finding(key, f"{str(path)!r}{where} is not an rclone config file ({reason})")]
    findings = []
    for (job_id, side), name in remotes.items():
        # A remote can also live in the environment: RCLONE_CONFIG_<NAME>_TYPE.
        in_env = f"RCLONE_CONFIG_{name.upper().replace('-', '_')}_TYPE" in os.environ
        if not parser.has_section(name) and not in_env:
            findings.append(
                Finding(
                    ("jobs", job_id, side),
                    f"the remote {name!r} is not defined in {path}",
                    error=False,
                )
            )
    return findings


def _state_dir(state_dir: Path) -> list[Finding]:
    """A warning when this user could not create or write the state folder."""
    folder = state_dir
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    if os.access(folder, os.W_OK | os.X_OK):
        return []
    return [
        Finding(
            ("state_dir",),
            f"{str(folder)!r} is not writable by this user; serve and run-job write the history "
            "and locks there (fine if they run as another user)",
            error=False,
        )
    ]


def _http(config: AppConfig) -> list[Finding]:
    """A warning when serve could not listen on http.listen now (unless it is this one's)."""
    if config.http is None:
        return []
    from mqtt_backup import health

    if health.check(config.state_dir) is None:
        return []  # the serve of this config is running: the port is its own
    from mqtt_backup.http.server import port_problem

    problem = port_problem(config.http)
    if problem is None:
        return []
    return [
        Finding(
            ("http", "listen"),
            f"serve cannot listen on {config.http.listen} now: {problem}",
            error=False,
        )
    ]


def _hooks(config: AppConfig) -> list[Finding]:
    """Each hook's program exists and may be run by this user (else every run fails)."""
    owners: list[tuple[tuple[str, ...], HooksConfig]] = [(("hooks",), config.hooks)]
    owners += [(("jobs", job_id, "hooks"), job.hooks) for job_id, job in config.jobs.items()]
    findings = []
    for prefix, hooks in owners:
        for kind in ("before", "on_failure", "after"):
            for number, hook in enumerate(getattr(hooks, kind) or []):
                program = hook.run[0]
                if os.sep in program:
                    usable = os.path.isfile(program) and os.access(program, os.X_OK)
                    problem = f"{program!r} does not exist or is not executable"
                else:
                    usable = shutil.which(program) is not None
                    problem = f"{program!r} is not found on PATH"
                if not usable:
                    key = (*prefix, kind, str(number), "run")
                    findings.append(Finding(key, f"{problem}; the runs of this hook would fail"))
    return findings
