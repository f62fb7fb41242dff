"""The composition root: what ``serve`` and ``run-job`` are made of, built and stopped in one order.

Both build the same parts the same way: history, then the executor, then its sinks (MQTT
first, so the retained state is never behind another consumer), then crash recovery. They
differ only in their role: ``serve`` is the daemon that owns the instance on the broker and
takes commands; ``run-job`` is one run in the foreground with a terminal display.

A new consumer of job state is one module in ``sinks/`` and one line in ``_sinks`` below
(docs/architecture.md, "Where does X go?").
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Literal

from mqtt_backup import startup
from mqtt_backup.config.models import AppConfig
from mqtt_backup.errors import InstanceOwned
from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History, HistoryPruner
from mqtt_backup.jobs.state import JobState
from mqtt_backup.sinks import Sink
from mqtt_backup.sinks.monitors import Monitors
from mqtt_backup.sinks.mqtt import MqttSink

if TYPE_CHECKING:
    from mqtt_backup.http.health import ServeState
    from mqtt_backup.http.server import HttpEndpoint
    from mqtt_backup.mqtt.command_inbox import CommandHandler
    from mqtt_backup.mqtt.publisher import Publisher

logger = logging.getLogger(__name__)

Role = Literal["daemon", "oneshot"]

# How long the sinks may take to hand on the last states before the publisher stops.
SINKS_STOP_TIMEOUT = 5.0
PUBLISHER_STOP_TIMEOUT = 5.0
# serve's last monitor pings get this long at shutdown (they were sent while the publisher
# stopped); run-job waits up to monitor_delivery.timeout for its own.
DAEMON_PINGS_FLUSH = 2.0


def _sinks(runtime: Runtime) -> list[Sink]:
    """Every consumer of job state besides MQTT and the terminal, for this role."""
    sinks: list[Sink] = []
    if runtime.role == "daemon":
        # Asked on each use: a reloaded configuration's bounds apply from the next run on.
        sinks.append(HistoryPruner(runtime.history, lambda: runtime.config.history_retention))
    if runtime.http is not None:
        sinks.append(runtime.http.metrics)  # a job's last finished run, while the next runs
    return sinks


def _http(runtime: Runtime, serve_state: ServeState | None) -> HttpEndpoint | None:
    """serve's HTTP endpoint, when the config asks for one (bound by ``http.start()``)."""
    settings = runtime.config.http
    if runtime.role != "daemon" or settings is None or serve_state is None:
        return None
    from mqtt_backup.http.server import HttpEndpoint, ServeView

    view = ServeView(
        config=lambda: runtime.config,
        states=runtime.executor.states,
        mqtt=lambda: runtime.publisher,
        serve=serve_state,
    )
    return HttpEndpoint(settings, view)


class Runtime:
    """History, executor, sinks and the MQTT publisher of one process, in their order."""

    def __init__(
        self,
        config: AppConfig,
        *,
        role: Role,
        job_ids: Iterable[str] | None = None,
        on_command: CommandHandler | None = None,
        on_conflict: Callable[[InstanceOwned], None] | None = None,
        sinks: Iterable[Sink] = (),
        serve_state: ServeState | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.history = History(config.state_dir).open()
        self.executor = JobExecutor(config, self.history)
        self.publisher: Publisher | None = None
        if config.mqtt is not None:
            # paho is imported only when a broker is configured.
            if role == "daemon":
                from mqtt_backup.mqtt.daemon_publisher import DaemonPublisher

                self.publisher = DaemonPublisher(
                    config,
                    known_topics=self.history,
                    on_command=on_command,
                    on_conflict=on_conflict,
                    job_ids=job_ids,
                )
            else:
                from mqtt_backup.mqtt.publisher import Publisher

                self.publisher = Publisher(config, known_topics=self.history, job_ids=job_ids or ())
            self.executor.add_sink(MqttSink(self.publisher))
        for sink in sinks:
            self.executor.add_sink(sink)
        self.http = _http(self, serve_state)
        # Before recovery, whose interrupted runs they report; they deliver on threads of
        # their own, and what they could not deliver waits in the outbox for the next process.
        self.monitors: Monitors | None = Monitors.open(lambda: self.config)
        if self.monitors is not None:
            self.executor.add_sink(self.monitors.sink)
        # Before any new run: a run a crash cut short ends as interrupted (docs/design.md).
        self.recovered = self.executor.recover()
        for sink in _sinks(self):
            if isinstance(sink, HistoryPruner):
                sink.prune_all()
            self.executor.add_sink(sink)

    def reconfigure(self, config: AppConfig) -> None:
        """A reload: the executor takes the new jobs, the publisher announces them."""
        self.config = config
        self.executor.reconfigure(config)
        if self.monitors is None:
            # The first monitors of this process: the sink reads them from then on.
            self.monitors = Monitors.open(lambda: self.config)
            if self.monitors is not None:
                self.executor.add_sink(self.monitors.sink)
        if self.publisher is not None:
            self.publisher.set_jobs(self.executor.states(), config)

    def start_publishing(self, states: Iterable[JobState]) -> None:
        """Queue ``states`` and connect; the first batch on the broker carries them."""
        if self.publisher is None:
            return
        for state in states:
            self.publisher.publish_state(state)
        self.publisher.start()

    def close(self, *, close_history: bool = True) -> None:
        """Hand the last states on, stop the publisher, then close the history."""
        self.executor.sinks.close(SINKS_STOP_TIMEOUT)
        if self.publisher is not None:
            self.publisher.stop(timeout=PUBLISHER_STOP_TIMEOUT)
        if self.http is not None:
            self.http.stop()
        if self.monitors is not None:
            flush = self.config.monitor_delivery.timeout.total_seconds()
            self.monitors.close(flush if self.role == "oneshot" else DAEMON_PINGS_FLUSH)
        if close_history:
            self.history.close()


def run_once(config: AppConfig, job_id: str, *, dry_run: bool = False) -> JobState:
    """``run-job``: one run in the foreground; SIGINT/SIGTERM cancel it cleanly.

    Raises JobBusy when the job is already running (nothing was started then).
    """
    from mqtt_backup.sinks.terminal import ProgressDisplay

    display = ProgressDisplay(sys.stderr)
    runtime = Runtime(config, role="oneshot", job_ids=[job_id], sinks=[display])
    try:
        executor = runtime.executor
        runtime.start_publishing([*runtime.recovered, executor.state(job_id)])
        _cancel_on_signals(lambda: executor.cancel(job_id))
        display.start()
        startup.resume()  # everything is imported and built: the run is about to start
        return executor.run(job_id, "cli", dry_run=dry_run)
    finally:
        # The terminal state must reach the display and the publisher before they stop.
        runtime.executor.sinks.close(SINKS_STOP_TIMEOUT)
        display.stop()
        runtime.close()


def _cancel_on_signals(cancel: Callable[[], object]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.warning("received %s: cancelling the run", signal.Signals(signum).name)
        threading.Thread(target=cancel, name="cancel", daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
