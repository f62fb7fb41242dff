"""The publisher of ``serve``: it owns the instance on the broker, takes commands, and
sends everything again when Home Assistant restarts.

A daemon publishes nothing on a connection until it has read the instance's retained owner
record and availability: a live ``serve`` elsewhere keeps the instance (see ``owner``).
Valid commands wait in the ``CommandInbox`` for the ``mqtt-backup-commands`` thread, so a
slow handler never blocks paho's loop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt

from mqtt_backup.config.models import AppConfig
from mqtt_backup.errors import InstanceOwned, MqttError
from mqtt_backup.mqtt.claim import InstanceClaim
from mqtt_backup.mqtt.command_inbox import CommandHandler, CommandInbox
from mqtt_backup.mqtt.known_topics import KnownTopics
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.owner import Owner
from mqtt_backup.mqtt.publisher import Publisher
from mqtt_backup.mqtt.topics import command_rejection

logger = logging.getLogger(__name__)

ConflictHandler = Callable[[InstanceOwned], None]


class DaemonPublisher(Publisher):
    """The MQTT side of the service."""

    def __init__(
        self,
        config: AppConfig,
        *,
        known_topics: KnownTopics | None = None,
        on_command: CommandHandler | None = None,
        on_conflict: ConflictHandler | None = None,
        job_ids: Iterable[str] | None = None,
        republish_delay: tuple[float, float] = (0.5, 3.0),
        refresh_interval: float | None = 900.0,
    ) -> None:
        """``job_ids``: the jobs to announce (default: all). ``republish_delay``: the random
        wait after Home Assistant's birth message. ``refresh_interval``: how often the states
        are sent again, so time-based templates (Overdue) are evaluated while nothing
        changes. ``on_conflict``: called (on paho's thread) when another live serve holds
        the instance; the publisher has stopped publishing by then."""
        super().__init__(
            config,
            known_topics=known_topics,
            job_ids=config.jobs if job_ids is None else job_ids,
            refresh_interval=refresh_interval,
        )
        assert config.mqtt is not None  # noqa: S101 - checked by Publisher
        self._inbox = CommandInbox(on_command) if on_command is not None else None
        self._on_conflict = on_conflict
        self._republish_delay = republish_delay
        self._claim = InstanceClaim(config, config.mqtt, self._topics)
        self._reclaim = False

    # -- the role --------------------------------------------------------------------------

    def _client_id(self) -> str:
        return self._claim.client_id

    def _will(self) -> Message | None:
        return Message.text(self._topics.availability, "offline")

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [(self._topics.ha_status, 0)]

    def _quiet(self) -> bool:
        return False

    def _before_connect(self) -> bool:
        if self._claim.chosen_client_id:
            holder = self._claim.holder_before_connecting()
            if holder is not None:
                self._refuse(holder)
                return False
        return True

    def _on_session(self, availability: bytes | None, owner: bytes | None) -> bool:
        holder = self._claim.holder(availability, owner)
        if holder is not None:
            self._give_way(holder)
            return False
        if self._mqtt.allow_commands:
            # Only now: a serve that turns out not to own the instance runs no command.
            assert self._session is not None  # noqa: S101 - started
            self._session.subscribe([(t, 1) for t in self._topics.command_subscriptions()])
        with self._lock:
            self._cleanup = True
        return True

    def _connect_messages(self) -> list[Message]:
        return [self._claim.record(), Message.text(self._topics.availability, "online")]

    def _extra_messages(self) -> list[Message]:
        if not self._reclaim:
            return []
        self._reclaim = False
        return [Message.text(self._topics.availability, "online")]

    def _goodbye(self) -> list[Message]:
        return [Message.text(self._topics.availability, "offline")]

    def _on_failed(self, error: MqttError) -> None:
        if not isinstance(error, InstanceOwned):
            logger.error("%s; not retrying (fix the setting and restart)", error)

    def _started_threads(self) -> None:
        if self._inbox is not None:
            self._inbox.start()

    def _stopped_threads(self, timeout: float) -> None:
        if self._inbox is not None:
            self._inbox.stop(timeout)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        if topic == self._topics.ha_status:
            if message.payload == b"online":
                self._resync_at(time.monotonic() + random.uniform(*self._republish_delay))  # noqa: S311
            return
        if topic == self._topics.owner:
            self._owner_claimed(bytes(message.payload))
            return
        if topic == self._topics.availability:
            if message.payload == b"offline":
                # A last will of an older connection of ours (the broker noticed it dead only
                # now), or a hand: while this serve is connected, the instance is online.
                with self._lock:
                    if self._connected and not self._stopping:
                        self._reclaim = True
                        self._lock.notify_all()
            return
        self._accept_command(message)

    # -- owning the instance ---------------------------------------------------------------

    def _owner_claimed(self, payload: bytes) -> None:
        """A live owner record while connected: another serve claimed this instance too."""
        rival = self._claim.rival(payload)
        if rival is None or not self._connected:
            return
        if self._claim.gives_way_to(rival):
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
        error = self._claim.refusal(holder)
        self.session_failed(error)
        if self._on_conflict is not None:
            self._on_conflict(error)

    # -- commands --------------------------------------------------------------------------

    def _accept_command(self, message: mqtt.MQTTMessage) -> None:
        parsed = self._topics.parse_command(message.topic)
        if parsed is None:
            super()._on_message(message)
            return
        job_id, command = parsed
        payload = bytes(message.payload)
        reason = command_rejection(
            command, payload, known_job=job_id in self._outbox.jobs, retained=message.retain
        )
        if reason is not None:
            logger.warning("ignoring command %r for job %r: %s", command, job_id, reason)
            return
        if self._inbox is not None:
            self._inbox.offer(job_id, command, payload)
