"""Valid MQTT commands wait here for their handler, so a slow one never blocks paho's loop.

Nothing is dropped for lack of room: at most one command of each kind waits per job, so
the inbox is bounded by the number of jobs, not by a guess. A command equal to one that
is still waiting is the same request twice and is coalesced into it (and logged); for
``enabled/set`` the newer payload wins, since only the switch's last position counts.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

logger = logging.getLogger(__name__)

CommandHandler = Callable[[str, str, bytes], None]
_STOP = ("", "")


class CommandInbox:
    """Waiting commands, oldest first, and the ``mqtt-backup-commands`` thread handing them on."""

    def __init__(self, handler: CommandHandler) -> None:
        self._handler = handler
        self._waiting: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="mqtt-backup-commands", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop after the command being handled; commands still waiting are logged, not run."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def offer(self, job_id: str, command: str, payload: bytes) -> None:
        """Queue a command; one that is already waiting for the same job is coalesced."""
        key = (job_id, command)
        with self._cond:
            if key in self._waiting:
                if command == "enabled/set":
                    self._waiting[key] = payload
                    return
                logger.info(
                    "job %s: %s command coalesced: the same command is still waiting",
                    job_id,
                    command,
                )
                return
            self._waiting[key] = payload
            self._cond.notify_all()

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _take(self) -> tuple[tuple[str, str], bytes]:
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping:
                if self._waiting:
                    logger.info(
                        "shutting down: %d waiting commands not handled", len(self._waiting)
                    )
                    self._waiting.clear()
                return _STOP, b""
            return self._waiting.popitem(last=False)

    def _run(self) -> None:
        while True:
            (job_id, command), payload = self._take()
            if (job_id, command) == _STOP:
                return
            try:
                self._handler(job_id, command, payload)
            except Exception:  # noqa: BLE001 - one bad command must not end command handling
                logger.exception("handling command %r for job %r failed", command, job_id)
