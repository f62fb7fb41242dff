"""A ``serve``'s claim on its instance id: its client id, its owner record, and its verdicts.

The rules themselves are the pure functions of ``owner``; this keeps the one ``Owner`` of
this process and applies them to what the broker retains or sends.
"""

from __future__ import annotations

import logging

from mqtt_backup.config.models import AppConfig, MqttConfig
from mqtt_backup.errors import InstanceOwned
from mqtt_backup.health import pid_alive
from mqtt_backup.mqtt import owner as ownership
from mqtt_backup.mqtt.client import read_retained
from mqtt_backup.mqtt.message import Message
from mqtt_backup.mqtt.topics import Topics

logger = logging.getLogger(__name__)


class InstanceClaim:
    def __init__(self, config: AppConfig, mqtt: MqttConfig, topics: Topics) -> None:
        self._config = config
        self._mqtt = mqtt
        self._topics = topics
        self.me = ownership.Owner.current()

    @property
    def client_id(self) -> str:
        """The user's, else one with this process's token: two serves never share one."""
        return self._mqtt.client_id or f"mqtt-backup-{self._config.instance}-{self.me.token[:8]}"

    @property
    def chosen_client_id(self) -> bool:
        return self._mqtt.client_id is not None

    def record(self) -> Message:
        return Message.text(self._topics.owner, self.me.to_json())

    def holder(self, availability: bytes | None, record: bytes | None) -> ownership.Owner | None:
        """The live serve that holds the instance, judged from what the broker retains."""
        other = ownership.Owner.from_json(record) if record else None
        return ownership.live_holder(self.me, other, availability, pid_alive)

    def holder_before_connecting(self) -> ownership.Owner | None:
        """The live holder, looked up under a throw-away client id; None also when no answer.

        Needed for a client id of the user's choosing: it is the same on every host with a
        copy of the config, and connecting with it would knock a live owner off the broker.
        Raises MqttError when the broker refuses the login.
        """
        topics = [self._topics.availability, self._topics.owner]
        retained = read_retained(self._config, topics, timeout=3.0, quiet=True)
        if retained is None:
            return None  # decided once connected, as with the default client id
        return self.holder(
            retained.get(self._topics.availability), retained.get(self._topics.owner)
        )

    def rival(self, payload: bytes) -> ownership.Owner | None:
        """Another serve's record, sent live: it claimed the instance too. None for ours."""
        other = ownership.Owner.from_json(payload) if payload else None
        return None if other is None or other.token == self.me.token else other

    def gives_way_to(self, rival: ownership.Owner) -> bool:
        """Of two claims, the later-started serve gives way; the other says so in its log."""
        if ownership.yields_to(self.me, rival):
            return True
        logger.warning(
            "another mqtt-backup serve (%s) tried to serve instance %r too; it started later "
            "and gives way",
            rival.describe(),
            self._config.instance,
        )
        return False

    def refusal(self, holder: ownership.Owner) -> InstanceOwned:
        return InstanceOwned(ownership.refusal(self._config.instance, holder))
