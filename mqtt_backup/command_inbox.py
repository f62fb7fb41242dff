"""Valid MQTT commands wait here for the app, so a slow handler never blocks paho's loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

CommandHandler = Callable[[str, str, bytes], None]
QUEUE_SIZE = 64


class CommandInbox:
    """A bounded queue and the ``mqtt-backup-commands`` thread that hands commands over."""

    def __init__(self, handler: CommandHandler) -> None:
        self._handler = handler
        self._queue: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="mqtt-backup-commands", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def offer(self, job_id: str, command: str, payload: bytes) -> None:
        """Queue a command; when too many wait already, drop it with a warning."""
        try:
            self._queue.put_nowait((job_id, command, payload))
        except queue.Full:
            logger.warning(
                "ignoring command %r for job %r: too many commands waiting", command, job_id
            )

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._handler(*item)
            except Exception:  # noqa: BLE001 - one bad command must not end command handling
                logger.exception("handling command %r for job %r failed", item[1], item[0])
