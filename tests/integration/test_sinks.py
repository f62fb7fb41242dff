"""A slow or failing sink delays neither rclone nor the terminal state on the broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mqtt_backup.jobs.executor import JobExecutor
from mqtt_backup.jobs.history import History
from mqtt_backup.jobs.state import JobState
from mqtt_backup.mqtt.publisher import Publisher
from mqtt_backup.sinks.mqtt import MqttSink
from tests.integration.mqtt_helpers import Collector
from tests.integration.rclone_servers import write_tree

SLOW = 5.0


class Sleepy:
    """A sink that takes 5 s over every call, like a webhook to a host that does not answer."""

    def __init__(self) -> None:
        self.calls = 0

    def state_changed(self, state: JobState) -> None:
        self.calls += 1
        time.sleep(SLOW)

    def run_finished(self, state: JobState) -> None:
        time.sleep(SLOW)


class Failing:
    def run_started(self, state: JobState) -> None:
        raise RuntimeError("down")

    def state_changed(self, state: JobState) -> None:
        raise RuntimeError("down")

    def run_finished(self, state: JobState) -> None:
        raise RuntimeError("down")


def test_the_terminal_state_arrives_while_a_slow_sink_sleeps(
    make_config: Any, tmp_path: Path, mosquitto: Any
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, {f"d/f{i}.bin": bytes(2048) for i in range(200)}, mtime=1_600_000_000)
    base = f"sinks{time.monotonic_ns()}"
    config = make_config(
        {
            "instance": "lab",
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "base_topic": base},
            "rclone": {"stats_interval": "100ms"},
            "jobs": {
                "t": {
                    "source": str(src),
                    "destination": str(dst),
                    "extra_args": ["--bwlimit", "400k"],  # about a second: many stats lines
                    "deletion": {"mode": "verify_then_delete"},
                }
            },
        }
    )
    topic = f"{base}/lab/jobs/t/state"
    watcher = Collector(mosquitto.host, mosquitto.port, [topic])
    slow = Sleepy()
    with History(config.state_dir) as history:
        publisher = Publisher(config, known_topics=history, job_ids=["t"])
        executor = JobExecutor(config, history, sinks=[slow, Failing(), MqttSink(publisher)])
        publisher.start()
        try:
            started = time.monotonic()
            final = executor.run("t", "cli")
            ended = time.monotonic()
            arrived = watcher.wait_message(
                topic, lambda m: json.loads(m.payload)["status"] == "completed", timeout=5
            )
        finally:
            executor.sinks.close(0.1)
            publisher.stop()
            watcher.close()
    assert final.status == "completed", final.error
    assert final.deletion.files_deleted == 200
    # On rclone's reader thread, the sleepy sink would have cost 5 s per stats line.
    assert ended - started < 4 * SLOW
    assert slow.calls <= 2  # it never saw most of the progress: it was coalesced
    assert arrived.at - ended < 1.0
