"""The ``mqtt-backup`` command starts with Python's cyclic garbage collector paused.

Start-up imports pydantic, paho, SQLite and the engine and builds their classes: tens of
thousands of long-lived objects and hardly any garbage, which the collector would walk
through again and again (about a tenth of a run-job's start-up CPU). It runs again once the
process is up: a run about to start, or ``serve`` serving (``resume``). Reference counting
frees objects as ever meanwhile; only reference cycles wait.
"""

from __future__ import annotations

import gc
from typing import NoReturn

_paused = False


def entry() -> NoReturn:
    """The ``mqtt-backup`` command (and ``python -m mqtt_backup``)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True
    from mqtt_backup.cli import entry as command

    command()


def resume() -> None:
    """Start the collector again, if entry() paused it (a no-op anywhere else)."""
    global _paused
    if _paused:
        _paused = False
        gc.enable()
