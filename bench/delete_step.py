"""Run the engine's delete step alone on a source, and print how long it took (JSON on stdout).

``python -m bench.delete_step SOURCE LIST RUN_DIR``: LIST holds the verified paths, one
per line, as the deletion plan would. Only ``deletion._delete`` is timed: it writes the
exact-path filter file, runs ``rclone delete`` and reads its "Deleted" lines.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import RCLONE
from mqtt_backup.config.models import JobConfig, RcloneConfig
from mqtt_backup.engine import deletion
from mqtt_backup.engine.context import RunContext
from mqtt_backup.logs import setup as setup_logging


def main(argv: list[str]) -> int:
    source, listing, run_dir = argv[0], Path(argv[1]), Path(argv[2])
    setup_logging("INFO")  # as run-job and serve do: rclone's lines go to logger.debug
    paths = sorted(line for line in listing.read_text(encoding="utf-8").split("\n") if line)
    job = JobConfig(
        source=source,
        destination=source + "-destination",
        deletion={"mode": "verify_then_delete", "verify": "checksum"},
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        "bench",
        job,
        RcloneConfig(binary=RCLONE),
        lambda _e: None,
        threading.Event(),
        run_dir,
        (1, 75, 0),
    )
    cutoff = datetime.now(UTC)
    start = time.perf_counter()
    deleted, _left, stopped, error = deletion._delete(ctx, paths, cutoff)  # noqa: SLF001
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"seconds": seconds, "deleted": len(deleted), "error": error, "stopped": bool(stopped)}
        )
    )
    return 0 if error is None and len(deleted) == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
