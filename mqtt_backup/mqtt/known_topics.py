"""Which retained topics each job owns on the broker, so that none outlives its job.

Home Assistant keeps an entity as long as its retained discovery is on the broker: a job
removed from the config, or an entity a job no longer has, would stay as a "ghost" unless
its topics are cleared with empty retained messages. The record survives restarts (the
SQLite history implements ``KnownTopics``), so a job removed while the service was down is
cleared at the next start too.
"""

from __future__ import annotations

import logging
from typing import Protocol

from mqtt_backup.config.models import AppConfig
from mqtt_backup.homeassistant.discovery import job_retained_topics, removal_messages
from mqtt_backup.mqtt.message import Message

logger = logging.getLogger(__name__)


class KnownTopics(Protocol):
    """Remembers, across restarts, which retained topics were published for which job."""

    def published_topics(self) -> dict[str, set[str]]: ...
    def record_published(self, job_id: str, topics: set[str]) -> None: ...
    def forget_published(self, job_id: str) -> None: ...


class MemoryKnownTopics:
    """The fallback store: removed-job cleanup within one process lifetime only."""

    def __init__(self) -> None:
        self._topics: dict[str, set[str]] = {}

    def published_topics(self) -> dict[str, set[str]]:
        return {job: set(topics) for job, topics in self._topics.items()}

    def record_published(self, job_id: str, topics: set[str]) -> None:
        # Adds, like the SQLite history does; forget_published() is the way to drop topics.
        self._topics.setdefault(job_id, set()).update(topics)

    def forget_published(self, job_id: str) -> None:
        self._topics.pop(job_id, None)


def sync_known_topics(
    known: KnownTopics, config: AppConfig, jobs: list[str], cleanup: bool
) -> list[Message]:
    """Record what each job owns now; with ``cleanup``, the messages that clear the rest.

    Never raises: a broken store must not stop the publishing (it is logged).
    """
    clear: list[Message] = []
    try:
        recorded = known.published_topics()
        for job_id in jobs:
            current = job_retained_topics(config, job_id)
            stale = recorded.get(job_id, set()) - current
            if cleanup and stale:
                # A format switch or fewer entities: the old discovery would be a ghost.
                logger.info("clearing %d outdated topics of job %r", len(stale), job_id)
                clear += removal_messages(stale)
                known.forget_published(job_id)
            if current - recorded.get(job_id, set()) or (cleanup and stale):
                known.record_published(job_id, current)
        if cleanup:
            for job_id, topics in recorded.items():
                if job_id not in jobs:
                    logger.info("job %r is no longer configured: clearing its topics", job_id)
                    clear += removal_messages(topics)
                    known.forget_published(job_id)
    except Exception:  # noqa: BLE001 - a broken store must not stop the publishing
        logger.exception("could not update the record of published topics")
    return clear
