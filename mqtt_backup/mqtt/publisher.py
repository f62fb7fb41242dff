"""Publishes job states, events and discovery to MQTT, and hands MQTT commands to the app.

Threads: paho's network thread runs the callbacks (through ``Session``), which only record
what happened and wake the ``mqtt-backup-publish`` worker; the worker is the only thread
that hands messages to paho. Valid commands wait in the ``CommandInbox`` for the
``mqtt-backup-commands`` thread, so a slow ``on_command`` never blocks paho's loop.

States are coalesced: only the latest state per job waits to be sent, and nothing is
handed to paho while disconnected (paho would keep QoS 1 messages in memory without
bound); every (re)connect republishes every job's latest state instead, which is also
how a terminal state reaches a broker that was down for the whole run (invariant 3).

A daemon publishes nothing on a connection until it has read the instance's retained owner
record and availability: a live ``serve`` elsewhere keeps the instance (see ``owner``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal

import paho.mqtt.client as mqtt

from mqtt_backup.config.models import AppConfig, MqttConfig
from mqtt_backup.errors import InstanceOwned, MqttError
from mqtt_backup.homeassistant.discovery import (
    discovery_messages,
    event_message,
    instance_discovery_messages,
)
from mqtt_backup.jobs.state import JobState
from mqtt_backup.mqtt.claim import InstanceClaim
from mqtt_backup.mqtt.client import read_retained_states, unique_client_id
from mqtt_backup.mqtt.command_inbox import CommandHandler, CommandInbox
from mqtt_backup.mqtt.known_topics import KnownTopics, MemoryKnownTopics, sync_known_topics
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.owner import Owner
from mqtt_backup.mqtt.session import Session
from mqtt_backup.mqtt.topics import Topics, command_rejection

logger = logging.getLogger(__name__)
__all__ = ["KnownTopics", "MemoryKnownTopics", "Publisher", "read_retained_states"]

Mode = Literal["daemon", "oneshot"]
MAX_PENDING_EVENTS = 64
ConflictHandler = Callable[[InstanceOwned], None]


def _significant(state: JobState) -> tuple[object, ...]:
    """What makes a state worth publishing at once; anything else is progress and is throttled."""
    return (
        state.status,
        state.phase,
        state.run_id,
        state.enabled,
        state.next_run_at,
        state.last_result,
        state.error,
        state.name,
        state.deletion.phase,
    )


class Publisher:
    """The MQTT side of the service (``daemon``) or of one ``run-job`` (``oneshot``)."""

    def __init__(
        self,
        config: AppConfig,
        *,
        mode: Mode,
        known_topics: KnownTopics | None = None,
        on_command: CommandHandler | None = None,
        on_conflict: ConflictHandler | None = None,
        job_ids: Iterable[str] | None = None,
        republish_delay: tuple[float, float] = (0.5, 3.0),
        refresh_interval: float | None = 900.0,
    ) -> None:
        """``job_ids``: the jobs to announce (default: all for a daemon, none for oneshot; a
        published state adds its job). ``republish_delay``: the random wait after HA's birth
        message. ``refresh_interval``: how often a daemon republishes the states, so
        time-based templates (Overdue) are evaluated again while nothing changes.
        ``on_conflict``: called (on paho's thread) when another live serve holds the instance;
        the publisher has stopped publishing by then."""
        if config.mqtt is None:
            raise MqttError("MQTT is not configured")
        self._config = config
        self._mqtt: MqttConfig = config.mqtt
        self._mode = mode
        self._known: KnownTopics = known_topics if known_topics is not None else MemoryKnownTopics()
        self._inbox = CommandInbox(on_command) if on_command is not None else None
        self._on_conflict = on_conflict
        self._republish_delay = republish_delay
        self._refresh_interval = refresh_interval
        self._topics = Topics(config.mqtt, config.instance)
        self._progress_interval = config.mqtt.progress_interval.total_seconds()
        self._claim = InstanceClaim(config, config.mqtt, self._topics) if mode == "daemon" else None
        self._lock = threading.Condition()
        if job_ids is None:
            job_ids = config.jobs if mode == "daemon" else ()
        self._jobs: dict[str, JobState | None] = dict.fromkeys(
            j for j in job_ids if j in config.jobs
        )
        self._pending: dict[str, JobState] = {}
        self._events: deque[Message] = deque(maxlen=MAX_PENDING_EVENTS)
        self._last_sent: dict[str, tuple[tuple[object, ...], float]] = {}
        self._resync = False
        self._cleanup = False
        self._reclaim = False
        self._birth_due: float | None = None
        self._refresh_due: float | None = None
        self._availability_absent = False
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

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start the threads.

        Settings that cannot be used (an unreadable TLS file) are logged and leave the
        publisher idle: publishing never stops a backup."""
        with self._lock:
            if self._started:
                return
            self._started = True
        will = None
        subscriptions: list[tuple[str, int]] = []
        if self._claim is not None:
            client_id = self._claim.client_id
            will = Message.text(self._topics.availability, "offline")
            subscriptions.append((self._topics.ha_status, 0))
        else:
            client_id = unique_client_id(self._config.instance, "run")
        self._session = Session(
            self._mqtt,
            self._topics,
            client_id,
            self,
            will=will,
            subscriptions=subscriptions,
            quiet=self._mode == "oneshot",
        )
        self._worker = threading.Thread(target=self._run, name="mqtt-backup-publish", daemon=True)
        self._worker.start()
        if self._inbox is not None:
            self._inbox.start()
        try:
            if self._claim is not None and self._claim.chosen_client_id:
                holder = self._claim.holder_before_connecting()
                if holder is not None:
                    self._refuse(holder)
                    return
            self._session.start()
        except MqttError as exc:
            self.session_failed(exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending (bounded by ``timeout``), say ``offline`` (daemon), disconnect."""
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
            unsent = sorted(self._pending)
        session = self._session
        assert session is not None  # noqa: S101 - set by start()
        if unsent and not isinstance(self._error, InstanceOwned):
            logger.warning(
                "the state of %s was not published (%s); it is kept in the local history, "
                "and serve (or the job's next run) publishes it once connected",
                ", ".join(unsent),
                self._error or session.problem or f"MQTT broker {self._where} was not reachable",
            )
        if self._mode == "daemon" and self._connected:
            self._send(Message.text(self._topics.availability, "offline"))
        self._wait_acknowledged(deadline)
        was_connected = self._connected
        session.close()
        if self._inbox is not None:
            self._inbox.stop(max(0.1, deadline - time.monotonic()))
        if was_connected:
            logger.info("disconnected from MQTT broker")

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
            self._jobs[state.job_id] = state
            self._pending[state.job_id] = state
            self._lock.notify_all()

    def publish_event(self, state: JobState) -> None:
        """Announce a finished run once (not retained; dropped when the broker is unreachable)."""
        if not state.is_terminal:
            return
        message = event_message(self._topics, state)
        with self._lock:
            self._events.append(message)
            self._lock.notify_all()

    def set_jobs(self, states: dict[str, JobState], config: AppConfig | None = None) -> None:
        """Replace the job set (a reload): new jobs are announced, removed ones cleared."""
        with self._lock:
            if config is not None:
                self._config = config
            self._jobs = {job: states.get(job) for job in states if job in self._config.jobs}
            self._pending = {job: s for job, s in self._pending.items() if job in self._jobs}
            self._resync = self._cleanup = True
            self._lock.notify_all()

    # -- session events (paho's thread: decide, record, wake the worker) -----------------

    def session_ready(self, availability: bytes | None, owner: bytes | None) -> None:
        """Connected, and the broker's retained availability and owner record are known."""
        if self._claim is not None:
            holder = self._claim.holder(availability, owner)
            if holder is not None:
                self._give_way(holder)
                return
            if self._mqtt.allow_commands:
                # Only now: a serve that turns out not to own the instance runs no command.
                assert self._session is not None  # noqa: S101 - started
                self._session.subscribe([(t, 1) for t in self._topics.command_subscriptions()])
        with self._lock:
            self._connected = True
            # No daemon ever said anything: a daemon-less setup still needs its entities shown.
            self._availability_absent = self._mode == "oneshot" and availability is None
            self._resync = True
            self._cleanup = self._mode == "daemon"
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
        if self._mode == "daemon" and not isinstance(error, InstanceOwned):
            logger.error("%s; not retrying (fix the setting and restart)", error)
        self._error = error
        self._connected_event.set()  # wake wait_connected(): there is nothing to wait for
        self._settled.set()
        with self._lock:
            self._lock.notify_all()

    def session_attempt_failed(self) -> None:
        self._settled.set()

    def session_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        if topic == self._topics.ha_status:
            if message.payload == b"online":
                with self._lock:
                    self._birth_due = time.monotonic() + random.uniform(*self._republish_delay)  # noqa: S311
                    self._lock.notify_all()
            return
        if topic == self._topics.owner:
            self._owner_claimed(bytes(message.payload))
            return
        if topic == self._topics.availability:
            if message.payload == b"offline" and self._claim is not None:
                # A last will of an older connection of ours (the broker noticed it dead only
                # now), or a hand: while this serve is connected, the instance is online.
                with self._lock:
                    if self._connected and not self._stopping:
                        self._reclaim = True
                        self._lock.notify_all()
            return
        self._accept_command(message)

    def _owner_claimed(self, payload: bytes) -> None:
        """A live owner record while connected: another serve claimed this instance too."""
        rival = self._claim.rival(payload) if self._claim is not None else None
        if rival is None or not self._connected:
            return
        if self._claim is not None and self._claim.gives_way_to(rival):
            self._give_way(rival)
            return
        with self._lock:
            self._resync = True  # our record, online, discovery and states again
            self._lock.notify_all()

    def _give_way(self, holder: Owner) -> None:
        with self._lock:
            self._connected = False
        assert self._session is not None  # noqa: S101 - started
        # A clean goodbye: the broker drops our last will, so the holder stays "online".
        self._session.give_up()
        self._refuse(holder)

    def _refuse(self, holder: Owner) -> None:
        assert self._claim is not None  # noqa: S101 - only a daemon claims
        error = self._claim.refusal(holder)
        self.session_failed(error)
        if self._on_conflict is not None:
            self._on_conflict(error)

    def _accept_command(self, message: mqtt.MQTTMessage) -> None:
        parsed = self._topics.parse_command(message.topic)
        if parsed is None:
            logger.warning("ignoring a message on unexpected topic %r", message.topic[:200])
            return
        job_id, command = parsed
        payload = bytes(message.payload)
        reason = command_rejection(
            command, payload, known_job=job_id in self._jobs, retained=message.retain
        )
        if reason is not None:
            logger.warning("ignoring command %r for job %r: %s", command, job_id, reason)
            return
        if self._inbox is not None:
            self._inbox.offer(job_id, command, payload)

    # -- worker threads --------------------------------------------------------------------

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
                            not (self._pending or self._resync)
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

    def _collect(self, now: float) -> tuple[list[Message | Callable[[], None]], float | None]:
        """What to send now (called with the lock held), and how long to sleep otherwise."""
        if not self._connected:
            return [], None  # on_connect wakes us
        batch: list[Message | Callable[[], None]] = []
        if self._resync or (self._birth_due is not None and now >= self._birth_due):
            batch += self._resync_batch(now)
        elif self._refresh_due is not None and now >= self._refresh_due:
            batch += self._state_messages(list(self._jobs), now)
        if self._availability_absent:
            self._availability_absent = False
            batch.append(Message.text(self._topics.availability, "online"))
        if self._reclaim:
            self._reclaim = False
            batch.append(Message.text(self._topics.availability, "online"))
        wait: float | None = None
        for job_id, state in list(self._pending.items()):
            key = _significant(state)
            last = self._last_sent.get(job_id)
            due = (
                now
                if last is None or last[0] != key or self._stopping
                else last[1] + self._progress_interval
            )
            if due <= now:
                batch += self._state_messages([job_id], now)
            else:
                wait = min(wait, due - now) if wait is not None else due - now
        while self._events:
            batch.append(self._events.popleft())
        for due_at in (self._birth_due, self._refresh_due):
            if due_at is not None:
                wait = (
                    min(wait, max(0.0, due_at - now))
                    if wait is not None
                    else max(0.0, due_at - now)
                )
        return batch, wait

    def _resync_batch(self, now: float) -> list[Message | Callable[[], None]]:
        """online, then discovery of every job, then every job's state (DESIGN §3)."""
        cleanup = self._cleanup
        self._resync = self._cleanup = False
        self._birth_due = None
        jobs = list(self._jobs)
        batch: list[Message | Callable[[], None]] = []
        if self._claim is not None:
            batch.append(self._claim.record())
            batch.append(Message.text(self._topics.availability, "online"))
        batch += instance_discovery_messages(self._config)
        for job_id in jobs:
            batch += discovery_messages(self._config, job_id)
        batch += self._state_messages(jobs, now)
        config = self._config
        batch.append(lambda: self._send_all(sync_known_topics(self._known, config, jobs, cleanup)))
        batch.append(self._synced_event.set)
        return batch

    def _state_messages(
        self, jobs: Iterable[str], now: float
    ) -> list[Message | Callable[[], None]]:
        messages: list[Message | Callable[[], None]] = []
        for job_id in jobs:
            self._pending.pop(job_id, None)
            state = self._jobs.get(job_id)
            if state is None:
                continue
            self._last_sent[job_id] = (_significant(state), now)
            messages.append(Message.text(self._topics.state(job_id), state.to_json()))
        if self._mode == "daemon" and self._refresh_interval:
            self._refresh_due = now + self._refresh_interval
        return messages

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
