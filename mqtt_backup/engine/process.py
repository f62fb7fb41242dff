"""The only module that starts processes: rclone and hooks, their output, stopping them politely."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqtt_backup.engine.orphans import die_with_parent, start_time
from mqtt_backup.engine.watchdog import Watchdog
from mqtt_backup.errors import ProgramNotStarted, RcloneError, RcloneNotFound

logger = logging.getLogger(__name__)

MIN_VERSION = (1, 60, 0)
# Each step of the stop sequence (SIGINT, SIGTERM) gets this long before the next.
GRACE_SECONDS = 3.0
# How often a waiting run looks at its cancel event and deadline.
_POLL_SECONDS = 0.05


@dataclass(slots=True)
class ProcessResult:
    """How one rclone process ended."""

    returncode: int
    cancelled: bool = False
    # Stopped by the deadline, or by the stall watchdog (then ``stalled`` is set too): either
    # way a limit of the run stopped it, and the steps after it must not run.
    timed_out: bool = False
    stalled: bool = False
    # The ``lastError`` of rclone's last stats report, when a watchdog read them.
    stats_error: str | None = None


@functools.cache
def _resolve(binary: str) -> str:
    """A bare ``rclone`` not on PATH falls back to the one installed beside this Python.

    ``pip install 'mqtt-backup[rclone]'`` puts rclone in the virtual environment's bin folder,
    which is not on PATH when the environment is not activated (cron, systemd).
    """
    if os.sep in binary or shutil.which(binary) is not None:
        return binary
    beside = Path(sys.executable).parent / binary
    return str(beside) if beside.is_file() else binary


def _not_found(binary: str) -> RcloneNotFound:
    return RcloneNotFound(f"rclone not found at {binary}; install it or set rclone.binary")


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    # The group may already be gone: stopping is then done.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGINT the whole group (rclone cleans up), then SIGTERM, then SIGKILL; then the rest."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        _signal_group(proc, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    _stop_rest(proc, grace)


def _stop_rest(proc: subprocess.Popen[Any], grace: float) -> None:
    """What the stopped process left of its group: a shell's background job ignores SIGINT."""
    if not _group_running(proc.pid):
        return
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_running(proc.pid):
            return
        time.sleep(_POLL_SECONDS)
    _signal_group(proc, signal.SIGKILL)


def _group_running(group: int) -> bool:
    """Whether a process of ``group`` still runs; a zombie waiting to be reaped does not."""
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc: ask the kernel, which also counts zombies
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        # After the command name, which may hold spaces: state, parent, process group.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(group) and fields[0] not in ("Z", "X"):
            return True
    return False


class _ExitWatch:
    """``exited(timeout)``: wait up to ``timeout`` for the process to end, seeing the end at once.

    A pidfd becomes readable the moment the process exits. Without one (not Linux, or an
    old kernel), Popen.wait polls with a sleep that grows to 50 ms, which every rclone call
    of a run would pay on average at its exit.
    """

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self._proc = proc
        self._fd: int | None = None
        # poll, not select: a daemon with many files open may hand out descriptors >= 1024.
        self._poller = select.poll()

    def __enter__(self) -> Callable[[float], bool]:
        with contextlib.suppress(AttributeError, OSError):
            self._fd = os.pidfd_open(self._proc.pid)
            self._poller.register(self._fd, select.POLLIN)
        return self._exited

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)

    def _exited(self, timeout: float) -> bool:
        if self._fd is not None:
            self._poller.poll(timeout * 1000)
            return self._proc.poll() is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def run(
    argv: list[str],
    *,
    on_line: Callable[[str], object],
    cancel: threading.Event,
    deadline: float | None = None,
    stdout_path: Path | None = None,
    name: str = "rclone",
    grace: float = GRACE_SECONDS,
    env: Mapping[str, str] | None = None,
    watchdog: Watchdog | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ProcessResult:
    """Run rclone until it exits, is cancelled, passes ``deadline`` (time.monotonic()) or,
    with a ``watchdog`` fed its stderr, stops making progress.

    ``env`` replaces the inherited environment when given. ``on_start(pid, start time)``
    is told of the process as soon as it runs. rclone gets SIGTERM if the calling thread
    ends first; this function only returns once rclone ended. Raises RcloneNotFound when
    the binary cannot be started.
    """
    if cancel.is_set():
        # Nothing is started once a run was cancelled (above all no delete).
        return ProcessResult(-int(signal.SIGINT), cancelled=True)
    stdout_file = stdout_path.open("wb") if stdout_path is not None else None
    try:
        try:
            proc = subprocess.Popen(
                [_resolve(argv[0]), *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=stdout_file if stdout_file is not None else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
                env=env,
                preexec_fn=die_with_parent(),
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            raise _not_found(argv[0]) from None
    finally:
        if stdout_file is not None:
            stdout_file.close()
    _started(proc, on_start)

    def read() -> None:
        assert proc.stderr is not None  # noqa: S101 - Popen was given stderr=PIPE
        for raw in proc.stderr:
            line = raw.rstrip("\r\n")
            try:
                if watchdog is not None:
                    watchdog.feed(line)
                on_line(line)
            except Exception:
                logger.exception("handling an rclone output line failed")

    reader = threading.Thread(target=read, name=f"{name}-stderr", daemon=True)
    reader.start()
    cancelled, timed_out, stalled = _wait(proc, cancel, deadline, grace, watchdog)
    reader.join()
    if proc.stderr is not None:
        proc.stderr.close()
    stats_error = watchdog.last_error if watchdog is not None else None
    return ProcessResult(proc.wait(), cancelled, timed_out, stalled, stats_error)


def _wait(
    proc: subprocess.Popen[Any],
    cancel: threading.Event,
    deadline: float | None,
    grace: float,
    watchdog: Watchdog | None = None,
) -> tuple[bool, bool, bool]:
    """Wait for the process to end, or stop it: (cancelled, timed out, stalled)."""
    cancelled = timed_out = stalled = False
    try:
        with _ExitWatch(proc) as exited:
            while True:
                # Cancel and the deadline come first: a run cancelled before a quick rclone
                # call must not count that call as done, whatever it finished in time to do.
                if cancel.is_set():
                    cancelled = True
                elif deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                elif exited(_POLL_SECONDS):
                    break
                elif watchdog is not None and watchdog.stalled():
                    timed_out = stalled = True
                else:
                    continue
                _stop(proc, grace)
                break
    except BaseException:
        # Never leave a process running behind an error of this thread (or a KeyboardInterrupt).
        _stop(proc, grace)
        raise
    return cancelled, timed_out, stalled


@dataclass(slots=True)
class ProgramResult:
    """How a program other than rclone ended (a hook); ``output`` is the end of what it wrote."""

    returncode: int
    output: str = ""
    # Bytes of output dropped from the front to keep ``output`` within its limit.
    dropped: int = 0
    cancelled: bool = False
    timed_out: bool = False


# How long the output of a program that ended is read on: a child it left running (a mount
# helper that forks into the background) may hold the pipe open for good.
_OUTPUT_DRAIN_SECONDS = 1.0


def run_program(
    argv: list[str],
    *,
    cancel: threading.Event,
    deadline: float | None,
    env: Mapping[str, str],
    limit: int,
    name: str,
    grace: float = GRACE_SECONDS,
    on_start: Callable[[int, int], None] | None = None,
) -> ProgramResult:
    """Run a program until it exits, is cancelled or passes ``deadline`` (time.monotonic()).

    Like ``run``: its own process group, stopped with SIGINT, SIGTERM, then SIGKILL; SIGTERM
    if the calling thread ends first; ``on_start`` is told its pid and start time. Its
    standard output and error are kept together, the last ``limit`` bytes of them. argv is
    never given to a shell. Raises ProgramNotStarted when the program cannot be started.
    """
    if cancel.is_set():
        return ProgramResult(-int(signal.SIGINT), cancelled=True)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=die_with_parent(),
        )
    except FileNotFoundError:
        raise ProgramNotStarted(f"{argv[0]} not found") from None
    except PermissionError:
        raise ProgramNotStarted(f"{argv[0]} cannot be run (permission denied)") from None
    except OSError as exc:
        raise ProgramNotStarted(f"{argv[0]} cannot be run ({exc.strerror or exc})") from None
    _started(proc, on_start)
    tail = _Tail(limit)

    def read() -> None:
        assert proc.stdout is not None  # noqa: S101 - Popen was given stdout=PIPE
        # Chunks, not lines: a program that writes without line breaks never grows memory.
        while chunk := os.read(proc.stdout.fileno(), 65536):
            tail.add(chunk)

    reader = threading.Thread(target=read, name=f"{name}-output", daemon=True)
    reader.start()
    cancelled, timed_out, _ = _wait(proc, cancel, deadline, grace)
    reader.join(_OUTPUT_DRAIN_SECONDS)
    returncode = proc.wait()
    output, dropped = tail.text()
    return ProgramResult(returncode, output, dropped, cancelled, timed_out)


class _Tail:
    """The last ``limit`` bytes written, and how many came before them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._kept += chunk
            over = len(self._kept) - self._limit
            if over > 0:
                del self._kept[:over]
                self._dropped += over

    def text(self) -> tuple[str, int]:
        with self._lock:
            return self._kept.decode("utf-8", errors="replace"), self._dropped


def _started(proc: subprocess.Popen[Any], on_start: Callable[[int, int], None] | None) -> None:
    if on_start is None:
        return
    started = start_time(proc.pid)
    if started is None:
        return  # no /proc here, or the process is already gone: nothing to stop later
    try:
        on_start(proc.pid, started)
    except Exception:  # rclone runs and must be waited for, whatever the record did
        logger.exception("recording the process %d failed", proc.pid)


def run_capture(
    argv: list[str], *, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run a short rclone command and return (exit code, stdout). Raises RcloneNotFound."""
    try:
        done = subprocess.run(
            [_resolve(argv[0]), *argv[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            env=env,
            preexec_fn=die_with_parent(),
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        raise _not_found(argv[0]) from None
    except subprocess.TimeoutExpired:
        return -int(signal.SIGKILL), ""
    return done.returncode, done.stdout


_VERSION = re.compile(r"rclone v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    found = _VERSION.search(text)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)


_VERSION_CACHE = "rclone-version.json"


def _identity(binary: str) -> str | None:
    """Path, size, mtime and inode of the binary: a new or upgraded rclone has another."""
    found = shutil.which(_resolve(binary))
    if found is None:
        return None
    real = os.path.realpath(found)
    try:
        info = os.stat(real)
    except OSError:
        return None
    return f"{real}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


def rclone_version(binary: str, cache_dir: Path | None = None) -> tuple[int, int, int]:
    """The (major, minor, patch) of ``binary``; raises RcloneNotFound or RcloneError (< 1.60).

    Asking rclone costs ~0.15 s per run, so the answer is kept in ``cache_dir`` for as long
    as the binary file stays the same.
    """
    identity = _identity(binary)
    cache = cache_dir / _VERSION_CACHE if cache_dir is not None else None
    version = _cached_version(cache, identity)
    if version is None:
        code, out = run_capture([binary, "version"], timeout=30.0)
        version = parse_version(out) if code == 0 else None
        if version is None:
            raise RcloneError(f"{binary} did not report an rclone version; is it rclone?")
        _store_version(cache, identity, version)
    if version < MIN_VERSION:
        shown = ".".join(map(str, version))
        raise RcloneError(f"rclone {shown} is too old; mqtt-backup needs rclone 1.60 or later")
    return version


def _cached_version(cache: Path | None, identity: str | None) -> tuple[int, int, int] | None:
    if cache is None or identity is None:
        return None
    with contextlib.suppress(OSError, ValueError, TypeError):
        known = json.loads(cache.read_text(encoding="utf-8"))
        if known.get("binary") == identity:
            major, minor, patch = known["version"]
            return int(major), int(minor), int(patch)
    return None


def _store_version(cache: Path | None, identity: str | None, version: tuple[int, ...]) -> None:
    if cache is None or identity is None:
        return
    # Written whole and renamed, so a concurrent run never reads half a file.
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"binary": identity, "version": list(version)}))
        partial.replace(cache)
