"""``serve``: the daemon — its runtime and scheduler, signals, reload and shutdown."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mqtt_backup import health, startup
from mqtt_backup.config.loader import load_config
from mqtt_backup.config.models import AppConfig
from mqtt_backup.config.supervisor import SupervisorError, addon_config
from mqtt_backup.errors import ConfigError, InstanceOwned, JobBusy, MqttBackupError
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.locks import JobLock
from mqtt_backup.redaction.secrets import RedactingFilter, config_secrets
from mqtt_backup.runtime import Runtime
from mqtt_backup.scheduling.scheduler import JobScheduler

if TYPE_CHECKING:
    from mqtt_backup.mqtt.publisher import Publisher

logger = logging.getLogger(__name__)

# SIGTERM to exit: runs are cancelled (rclone gets its grace period), their final states are
# published, and the process is gone well within Docker's and systemd's default 10-90 s.
RUNS_STOP_TIMEOUT = 20.0
# How long start-up waits for the broker before scheduling, so that states recovered from a
# crash (docs/design.md, guarantee 2) are on the broker before any new run replaces them.
CONNECT_WAIT = 10.0
# Settings the running service cannot change in place; a reload keeps their old values.
RESTART_ONLY = ("instance", "state_dir", "mqtt", "max_concurrent_jobs", "http")
# Not a valid job id, so this lock can never collide with a job's.
SERVE_LOCK = ".serve"


def serve(path: Path, config: AppConfig, redactor: RedactingFilter) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads ``path``. Returns the exit code.

    Raises InstanceOwned when another live serve holds the instance on the broker: at
    start-up before anything runs, or later, after a clean stop, when both claimed it while
    the broker was away and this one started later.
    """
    events: queue.SimpleQueue[int | InstanceOwned] = queue.SimpleQueue()
    service = Service(path, config, redactor, on_conflict=events.put)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        events.put(signum)  # SimpleQueue.put is safe in a signal handler; work happens below

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        service.start()
    except MqttBackupError:
        service.stop()
        raise
    startup.resume()  # serving: the collector runs again
    conflict: InstanceOwned | None = None
    try:
        while True:
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                continue
            if isinstance(event, InstanceOwned):
                logger.error("%s: stopping", event)
                conflict = event
                break
            if event == signal.SIGHUP:
                logger.info("received SIGHUP: reloading %s", path)
                service.reload()
                continue
            logger.info("received %s: stopping", signal.Signals(event).name)
            break
    finally:
        clean = service.stop()
    if not clean:
        # A run that outlived its cancel would keep a non-daemon pool thread, and with it the
        # process, alive: leave now rather than overstay the supervisor's stop timeout.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(1)
    if conflict is not None:
        raise conflict
    return 0


def healthcheck(config: AppConfig) -> int:
    """0 while a ``serve`` of this config writes fresh heartbeats, else 1 with the reason."""
    problem = health.check(config.state_dir)
    if problem is None:
        print("mqtt-backup serve is alive")
        return 0
    print(f"unhealthy: {problem}")
    return 1


class Service:
    """The daemon's parts and their order of start and stop."""

    def __init__(
        self,
        path: Path,
        config: AppConfig,
        redactor: RedactingFilter,
        on_conflict: Callable[[InstanceOwned], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._on_conflict = on_conflict
        self.config = config
        self._redactor = redactor
        self._stopping = threading.Event()
        self._runs: dict[str, threading.Thread] = {}
        self._runs_lock = threading.Lock()
        self._lock: JobLock | None = None
        self.runtime: Runtime | None = None
        self.history: History | None = None
        self.executor: JobExecutor | None = None
        self.scheduler: JobScheduler | None = None
        self.publisher: Publisher | None = None
        self._heartbeat: health.Heartbeat | None = None

    # lifecycle

    def start(self) -> None:
        """Recover, publish, then schedule.

        Raises MqttBackupError when another serve runs on this state_dir, and InstanceOwned
        when the broker says another live serve holds this instance.
        """
        config = self.config
        try:
            self._lock = JobLock(config.state_dir, SERVE_LOCK).acquire()
        except JobBusy:
            raise MqttBackupError(
                f"another mqtt-backup serve already uses state_dir {config.state_dir}"
            ) from None
        beat = health.read_beat(config.state_dir)
        runtime = self.runtime = Runtime(
            config,
            role="daemon",
            on_command=self._on_command,
            on_conflict=self._conflict,
            serve_state=self,
        )
        if runtime.http is not None:
            runtime.http.start()  # before publishing: a port in use stops the start at once
        executor, history, publisher = runtime.executor, runtime.history, runtime.publisher
        self.executor, self.history, self.publisher = executor, history, publisher
        runtime.start_publishing(executor.states().values())
        if publisher is not None:
            # Before anything runs: is the instance ours? A broker that cannot be reached
            # (or refuses us) decides nothing, and the backups run without it meanwhile.
            publisher.wait_settled(CONNECT_WAIT)
            if publisher.conflict is not None:
                raise publisher.conflict
            if runtime.recovered and not publisher.wait_synced(CONNECT_WAIT):
                logger.warning(
                    "the broker is not reachable yet: interrupted states will be published "
                    "once it is (a newer run may have replaced them by then)"
                )
        scheduler = self.scheduler = JobScheduler(executor, history)
        catch_ups = scheduler.start(config, last_alive=beat.at if beat else None)
        self._heartbeat = health.Heartbeat(config.state_dir, lambda: scheduler.running)
        self._heartbeat.start()
        logger.info(
            "serving instance %s: %d job(s) (%d scheduled, %d catching up), pid %d",
            config.instance,
            len(config.jobs),
            sum(1 for job in config.jobs.values() if job.schedule is not None),
            len(catch_ups),
            os.getpid(),
        )

    # what the HTTP endpoint asks (http/health.py, ServeState)

    @property
    def scheduler_running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> bool:
        """Stop scheduling, cancel runs, publish their final states, say offline.

        Returns False when some run did not end in time.
        """
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        clean = self._cancel_runs(RUNS_STOP_TIMEOUT)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.runtime is not None:
            # Cancelled runs' final states reach the publisher before it says offline; a run
            # that did not end may still write to the history, so it stays open then.
            self.runtime.close(close_history=clean)
        if self._lock is not None:
            self._lock.release()
        logger.info("stopped" if clean else "stopped, but some runs did not end in time")
        return clean

    def _cancel_runs(self, timeout: float) -> bool:
        executor = self.executor
        if executor is None:
            return True
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            # Again on each pass: a fire that was already on its way may have started a run.
            executor.cancel_all()
            active = [job for job in executor.states() if executor.is_running(job)]
            with self._runs_lock:
                threads = [t for t in self._runs.values() if t.is_alive()]
            if not active and not threads:
                return True
            if not announced:
                logger.info("cancelling %d running jobs: %s", len(active), ", ".join(active))
                announced = True
            if time.monotonic() >= deadline:
                logger.error("runs still going after %.0fs: %s", timeout, ", ".join(active))
                return False
            time.sleep(0.1)

    # reload (SIGHUP)

    def reload(self) -> None:
        """Adopt the file's new config; an invalid file is logged and the old one kept."""
        try:
            loaded = addon_config(load_config(self.path, scheduling=True), broker=True)
        except ConfigError as exc:
            logger.error("%s is invalid; keeping the running configuration:", self.path)
            for error in exc.errors:
                logger.error("  %s", error)
            return
        except SupervisorError as exc:
            logger.error("%s; keeping the running configuration", exc)
            return
        old = self.config
        kept = {
            key: getattr(old, key)
            for key in RESTART_ONLY
            if getattr(loaded, key) != getattr(old, key)
        }
        for key in kept:
            logger.warning("a change of %s takes effect after a restart; keeping the old one", key)
        new = loaded.model_copy(update=kept)
        # Old secrets stay masked too: they may still appear in a running job's output.
        self._redactor.add(config_secrets(new))
        assert self.runtime is not None and self.scheduler is not None  # noqa: S101 - started
        self.runtime.reconfigure(new)
        self.scheduler.apply(new)
        self.config = new
        added = sorted(set(new.jobs) - set(old.jobs))
        removed = sorted(set(old.jobs) - set(new.jobs))
        logger.info(
            "reloaded %s: %d jobs; added: %s; removed: %s",
            self.path,
            len(new.jobs),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
        )

    def _conflict(self, error: InstanceOwned) -> None:
        # Paho's thread. During start() too, when start() raises it itself: then nobody reads it.
        if self._on_conflict is not None:
            self._on_conflict(error)

    # MQTT commands (the publisher's command thread)

    def _on_command(self, job_id: str, command: str, payload: bytes) -> None:
        if self._stopping.is_set():
            logger.info("job %s: %s command ignored: shutting down", job_id, command)
            return
        if job_id not in self.config.jobs:
            logger.warning("job %s: %s command ignored: no such job", job_id, command)
            return
        assert self.executor is not None and self.scheduler is not None  # noqa: S101 - started
        if command == "run":
            self._start_run(job_id)
        elif command == "cancel":
            if not self.executor.cancel(job_id):
                logger.info("job %s: cancel command ignored: not running", job_id)
        elif command == "enabled/set":
            text = payload.decode("utf-8", "replace").strip()
            if text not in ("ON", "OFF"):
                logger.warning("job %s: enabled/set wants ON or OFF, got %r", job_id, text[:20])
                return
            self.scheduler.set_enabled(job_id, text == "ON")
        else:
            logger.warning("job %s: unknown command %r ignored", job_id, command)

    def _start_run(self, job_id: str) -> None:
        assert self.executor is not None  # noqa: S101 - started
        with self._runs_lock:
            thread = self._runs.get(job_id)
            if self.executor.is_running(job_id) or (thread is not None and thread.is_alive()):
                # At most one pending run per job: "run all" twice must not run everything twice.
                logger.info(
                    "job %s: run command coalesced: a run is already queued or running", job_id
                )
                return
            thread = threading.Thread(
                target=self._run_command, args=(job_id,), name=f"run-{job_id}", daemon=True
            )
            self._runs[job_id] = thread
        thread.start()

    def _run_command(self, job_id: str) -> None:
        assert self.executor is not None and self.scheduler is not None  # noqa: S101 - started
        try:
            self.executor.run(job_id, "command")
        except JobBusy as exc:
            logger.info("job %s: run command ignored: %s", job_id, exc)
        except KeyError:
            logger.info("job %s: run command ignored: no longer configured", job_id)
        except Exception:  # a thread's crash would otherwise only reach stderr
            logger.exception("job %s: the commanded run failed", job_id)
        finally:
            self.scheduler.refresh(job_id)
