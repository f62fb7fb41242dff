"""The connection to the broker and the outbox of states: what every role of publisher shares.

Threads: paho's network thread runs the callbacks (through ``Session``), which only record
what happened and wake the ``mqtt-backup-publish`` worker; the worker is the only thread
that hands messages to paho.

States are coalesced (``outbox``): only the latest state per job waits to be sent, and
nothing is handed to paho while disconnected (paho would keep QoS 1 messages in memory
without bound); every (re)connect republishes every job's latest state instead, which is
also how a terminal state reaches a broker that was down for the whole run
(docs/design.md, guarantee 3: terminal states arrive).

``Publisher`` itself is the role of one ``run-job``; ``daemon_publisher.DaemonPublisher`` adds
what only ``serve`` does: owning the instance, commands, and Home Assistant's restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt

from mqtt_backup.config.models import AppConfig, MqttConfig
from mqtt_backup.errors import InstanceOwned, MqttError
from mqtt_backup.homeassistant.discovery import (
    discovery_messages,
    event_message,
    instance_discovery_messages,
)
from mqtt_backup.jobs.state import JobState
from mqtt_backup.mqtt.client import unique_client_id
from mqtt_backup.mqtt.known_topics import KnownTopics, MemoryKnownTopics, sync_known_topics
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.outbox import StateOutbox
from mqtt_backup.mqtt.session import Session
from mqtt_backup.mqtt.topics import Topics

logger = logging.getLogger(__name__)

Batch = list[Message | Callable[[], None]]


class Publisher:
    """One connection to the broker and the states waiting for it: the role of ``run-job``.

    Subclasses change the role through the ``_``-prefixed hooks below; the connection, the
    outbox and the worker thread stay here.
    """

    def __init__(
        self,
        config: AppConfig,
        *,
        known_topics: KnownTopics | None = None,
        job_ids: Iterable[str] = (),
        refresh_interval: float | None = None,
    ) -> None:
        """``job_ids``: the jobs to announce (a published state adds its job).
        ``refresh_interval``: how often every state is sent again while nothing changes."""
        if config.mqtt is None:
            raise MqttError("MQTT is not configured")
        self._config = config
        self._mqtt: MqttConfig = config.mqtt
        self._known: KnownTopics = known_topics if known_topics is not None else MemoryKnownTopics()
        self._refresh_interval = refresh_interval
        self._topics = Topics(config.mqtt, config.instance)
        self._lock = threading.Condition()
        self._outbox = StateOutbox(
            (j for j in job_ids if j in config.jobs), config.mqtt.progress_interval.total_seconds()
        )
        self._resync = False
        self._cleanup = False
        self._availability_absent = False
        self._resync_due: float | None = None
        self._refresh_due: float | None = None
        self._stop_deadline = 0.0
        self._inflight: deque[mqtt.MQTTMessageInfo] = deque()
        self._connected = False
        self._stopping = False
        self._started = False
        self._stopped = False
        self._error: MqttError | None = None
        self._connected_event = threading.Event()
        self._synced_event = threading.Event()
        self._settled = threading.Event()
        self._session: Session | None = None
        self._worker: threading.Thread | None = None

    # -- the role: what a subclass changes -------------------------------------------------

    def _client_id(self) -> str:
        return unique_client_id(self._config.instance, "run")

    def _will(self) -> Message | None:
        return None

    def _subscriptions(self) -> list[tuple[str, int]]:
        return []

    def _quiet(self) -> bool:
        """One line per problem at most: a one-shot run's log is about the backup."""
        return True

    def _before_connect(self) -> bool:
        """False when this publisher must not connect at all."""
        return True

    def _on_session(self, availability: bytes | None, owner: bytes | None) -> bool:
        """Connected; False when this publisher must not publish on the connection."""
        with self._lock:
            self._availability_absent = availability is None
        return True

    def _connect_messages(self) -> list[Message]:
        """Sent first on each connection, before discovery and states."""
        if self._availability_absent:
            # No serve ever said anything: a serve-less setup still needs its entities shown.
            self._availability_absent = False
            return [Message.text(self._topics.availability, "online")]
        return []

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.topic in (self._topics.availability, self._topics.owner):
            return  # read by the session on connect; only a daemon acts on them later
        logger.warning("ignoring a message on unexpected topic %r", message.topic[:200])

    def _goodbye(self) -> list[Message]:
        """Sent last, before disconnecting."""
        return []

    def _on_failed(self, error: MqttError) -> None:
        """The publisher gave up for good (a one-shot run says so once, at its end)."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start the threads.

        Settings that cannot be used (an unreadable TLS file) are logged and leave the
        publisher idle: publishing never stops a backup."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._session = Session(
            self._mqtt,
            self._topics,
            self._client_id(),
            self,
            will=self._will(),
            subscriptions=self._subscriptions(),
            quiet=self._quiet(),
        )
        self._worker = threading.Thread(target=self._run, name="mqtt-backup-publish", daemon=True)
        self._worker.start()
        self._started_threads()
        try:
            if self._before_connect():
                self._session.start()
        except MqttError as exc:
            self.session_failed(exc)

    def _started_threads(self) -> None:
        """Start the role's own threads, if any."""

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending (bounded by ``timeout``), say goodbye, disconnect."""
        with self._lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
            self._stopping = True
            self._stop_deadline = deadline = time.monotonic() + timeout
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            unsent = self._outbox.unsent
        session = self._session
        assert session is not None  # noqa: S101 - set by start()
        if unsent and not isinstance(self._error, InstanceOwned):
            logger.warning(
                "the state of %s was not published (%s); it is kept in the local history, "
                "and serve (or the job's next run) publishes it once connected",
                ", ".join(unsent),
                self._error or session.problem or f"MQTT broker {self._where} was not reachable",
            )
        if self._connected:
            self._send_all(self._goodbye())
        self._wait_acknowledged(deadline)
        was_connected = self._connected
        session.close()
        self._stopped_threads(max(0.1, deadline - time.monotonic()))
        if was_connected:
            logger.info("disconnected from MQTT broker")

    def _stopped_threads(self, timeout: float) -> None:
        """Stop the role's own threads, if any."""

    @property
    def _where(self) -> str:
        return f"{self._mqtt.host}:{self._mqtt.port}"

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def error(self) -> MqttError | None:
        """Why the publisher gave up (bad credentials, unusable TLS files, instance owned)."""
        return self._error

    @property
    def conflict(self) -> InstanceOwned | None:
        """Set when another live serve holds this instance; nothing is published then."""
        return self._error if isinstance(self._error, InstanceOwned) else None

    @property
    def problem(self) -> str | None:
        """The current connection problem, named for the user; None while connected."""
        if self._error is not None:
            return str(self._error)
        return self._session.problem if self._session is not None else None

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and publishing; False on timeout or when the publisher gave up."""
        return self._connected_event.wait(timeout) and self._error is None

    def wait_synced(self, timeout: float) -> bool:
        """True once the connect-time batch (online, discovery, states) was handed to paho."""
        return self._synced_event.wait(timeout) and self._error is None

    def wait_settled(self, timeout: float) -> None:
        """Until the first connect was decided: publishing, refused, or the attempt failed."""
        self._settled.wait(timeout)

    # -- what the app publishes ------------------------------------------------------------

    def publish_state(self, state: JobState) -> None:
        """Queue a job's state; only the latest per job waits, progress is throttled."""
        with self._lock:
            if state.job_id not in self._config.jobs:
                # A job removed by a reload may still be finishing; its topics were cleared.
                logger.debug("not publishing the state of unconfigured job %r", state.job_id)
                return
            self._outbox.put(state)
            self._lock.notify_all()

    def publish_event(self, state: JobState) -> None:
        """Announce a finished run once (not retained; dropped when the broker is unreachable)."""
        if not state.is_terminal:
            return
        message = event_message(self._topics, state)
        with self._lock:
            self._outbox.put_event(message)
            self._lock.notify_all()

    def set_jobs(self, states: dict[str, JobState], config: AppConfig | None = None) -> None:
        """Replace the job set (a reload): new jobs are announced, removed ones cleared."""
        with self._lock:
            if config is not None:
                self._config = config
            self._outbox.replace_jobs(states, self._config.jobs)
            self._resync = self._cleanup = True
            self._lock.notify_all()

    # -- session events (paho's thread: decide, record, wake the worker) -----------------

    def session_ready(self, availability: bytes | None, owner: bytes | None) -> None:
        """Connected, and the broker's retained availability and owner record are known."""
        if not self._on_session(availability, owner):
            return
        with self._lock:
            self._connected = True
            self._resync = True
            self._lock.notify_all()
        self._connected_event.set()
        self._settled.set()

    def session_lost(self) -> None:
        with self._lock:
            self._connected = False
        self._synced_event.clear()
        if self._error is None:
            self._connected_event.clear()

    def session_failed(self, error: MqttError) -> None:
        """The broker refused the login, or the settings cannot be used: no more retries."""
        self._on_failed(error)
        self._error = error
        self._connected_event.set()  # wake wait_connected(): there is nothing to wait for
        self._settled.set()
        with self._lock:
            self._lock.notify_all()

    def session_attempt_failed(self) -> None:
        self._settled.set()

    def session_message(self, message: mqtt.MQTTMessage) -> None:
        self._on_message(message)

    def _resync_at(self, due: float) -> None:
        """Send everything again at ``due`` (monotonic time)."""
        with self._lock:
            self._resync_due = due
            self._lock.notify_all()

    # -- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                batch, wait = self._collect(now)
                if not batch:
                    if self._stopping:
                        # Leave once nothing is left, or when stop()'s time is up (the
                        # broker may stay away; the history keeps the state for later).
                        if (
                            not (self._outbox.unsent or self._resync)
                            or now >= self._stop_deadline
                            or self._error is not None  # nothing will ever be sent
                        ):
                            return
                        wait = 0.1
                    self._lock.wait(wait)
                    continue
            for item in batch:
                if isinstance(item, Message):
                    self._send(item)
                else:
                    item()

    def _collect(self, now: float) -> tuple[Batch, float | None]:
        """What to send now (called with the lock held), and how long to sleep otherwise."""
        if not self._connected:
            return [], None  # on_connect wakes us
        batch: Batch = []
        if self._resync or (self._resync_due is not None and now >= self._resync_due):
            batch += self._resync_batch(now)
        elif self._refresh_due is not None and now >= self._refresh_due:
            batch += self._state_messages(list(self._outbox.jobs), now)
        batch += self._extra_messages()
        due, wait = self._outbox.due(now, hurry=self._stopping)
        if due:
            batch += self._state_messages(due, now)
        batch += self._outbox.take_events()
        for due_at in (self._resync_due, self._refresh_due):
            if due_at is not None:
                left = max(0.0, due_at - now)
                wait = left if wait is None else min(wait, left)
        return batch, wait

    def _extra_messages(self) -> list[Message]:
        """The role's messages that became due since the last batch."""
        return []

    def _resync_batch(self, now: float) -> Batch:
        """The role's first messages, then discovery of every job, then every job's state."""
        cleanup = self._cleanup
        self._resync = self._cleanup = False
        self._resync_due = None
        jobs = list(self._outbox.jobs)
        batch: Batch = [*self._connect_messages()]
        batch += instance_discovery_messages(self._config)
        for job_id in jobs:
            batch += discovery_messages(self._config, job_id)
        batch += self._state_messages(jobs, now)
        config = self._config
        batch.append(lambda: self._send_all(sync_known_topics(self._known, config, jobs, cleanup)))
        batch.append(self._synced_event.set)
        return batch

    def _state_messages(self, jobs: Iterable[str], now: float) -> Batch:
        states = self._outbox.take(jobs, now)
        if self._refresh_interval:
            self._refresh_due = now + self._refresh_interval
        return [Message.text(self._topics.state(s.job_id), s.to_json()) for s in states]

    def _send_all(self, messages: list[Message]) -> None:
        for message in messages:
            self._send(message)

    def _send(self, message: Message) -> None:
        session = self._session
        if session is None or not self._connected:
            return
        info = session.publish(message)
        if info is not None and message.qos > 0:
            # Acknowledgements arrive mostly in order: dropping them from the front keeps
            # each send O(1) (a full scan per send made 1,000 jobs' start-up quadratic).
            while self._inflight and _settled(self._inflight[0]):
                self._inflight.popleft()
            self._inflight.append(info)

    def _wait_acknowledged(self, deadline: float) -> None:
        for info in self._inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._connected:
                break
            try:
                info.wait_for_publish(remaining)
            except (RuntimeError, ValueError):
                break  # paho: the message can no longer be sent (connection gone)
        unacked = sum(1 for i in self._inflight if not _settled(i))
        if unacked:
            logger.warning("%d MQTT messages were not acknowledged before disconnecting", unacked)


def _settled(info: mqtt.MQTTMessageInfo) -> bool:
    """Acknowledged, or never sent: paho raises for a publish made as the connection dropped.

    The message is not lost: the latest state of each job is sent again on reconnect.
    """
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True
