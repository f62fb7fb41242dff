"""Pure: who serves an instance, and whether a starting ``serve`` may take it over.

One instance id belongs to one ``serve`` at a time. The serving process keeps a retained
owner record (host, pid, start time, a random token) next to the instance's availability.
A starting serve reads both before it publishes anything: a record with availability
``online`` is a live owner (the broker sets ``offline`` by the last will when that
process dies, and the process itself on a clean stop), and the newcomer is refused.
Two serves that both claimed the instance (the broker was away while they started) find
out from each other's records: the one that started later yields.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mqtt_backup.jobs.state import iso


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    pid: int
    started_at: datetime
    token: str

    @classmethod
    def current(cls, now: datetime | None = None) -> Owner:
        """This process as an owner: a new token per process, so restarts are told apart."""
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now or datetime.now(UTC),
            token=uuid.uuid4().hex[:12],
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "started_at": iso(self.started_at, "milliseconds"),
                "token": self.token,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> Owner | None:
        """The record, or None for an empty or unreadable payload (nobody to name)."""
        try:
            data = json.loads(payload)
            started = datetime.fromisoformat(str(data["started_at"]).replace("Z", "+00:00"))
            owner = cls(str(data["host"]), int(data["pid"]), started, str(data["token"]))
        except (ValueError, TypeError, KeyError):
            return None
        return owner if started.tzinfo is not None and owner.token else None

    def describe(self) -> str:
        return f"host {self.host!r}, pid {self.pid}, since {iso(self.started_at)}"


def live_holder(
    me: Owner,
    record: Owner | None,
    availability: bytes | None,
    pid_alive: Callable[[int], bool],
) -> Owner | None:
    """The other serve that holds the instance right now, or None when ``me`` may take it.

    A record without ``online`` is stale (its serve stopped or died). On this host, a record
    whose process is gone, or whose pid is our own (a restarted container is pid 1 again),
    is a previous run of this serve whose connection the broker has not yet noticed dead.
    """
    if record is None or record.token == me.token or availability != b"online":
        return None
    if record.host == me.host and (record.pid == me.pid or not pid_alive(record.pid)):
        return None
    return record


def yields_to(me: Owner, other: Owner) -> bool:
    """Of two serves that both claimed the instance, whether ``me`` gives way (started later)."""
    return (me.started_at, me.token) > (other.started_at, other.token)


def refusal(instance: str, holder: Owner) -> str:
    return (
        f"instance {instance!r} is already served by mqtt-backup on {holder.describe()}; "
        "not serving it twice (give this host its own instance: in the config, "
        "or stop the other serve)"
    )
