"""The command starts with the cyclic garbage collector paused, and gets it back once up."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import gc, sys
import mqtt_backup.cli as cli

def command():
    print(gc.isenabled())
    from mqtt_backup import startup
    startup.resume()
    print(gc.isenabled())
    startup.resume()  # twice is harmless
    sys.exit(0)

cli.entry = command
from mqtt_backup.startup import entry
entry()
"""


def test_paused_during_start_up_and_back_once_resumed() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_resume_leaves_a_collector_it_did_not_pause_alone() -> None:
    code = (
        "import gc; gc.disable(); from mqtt_backup import startup; startup.resume(); "
        "print(gc.isenabled())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
