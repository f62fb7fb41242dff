"""One instance, one serve: a second one is refused by name, and the first never notices."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import run_cli, wait_for, write_config
from tests.integration.conftest import Broker
from tests.integration.mqtt_helpers import Collector, retained_snapshot
from tests.integration.serve_helpers import Daemon, make_config, make_tree

pytestmark = pytest.mark.timeout(120)
MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def daemons(tmp_path: Path, rclone_binary: str) -> Iterator[MakeDaemon]:
    """Serves of one instance, each with its own state_dir (as on two hosts)."""
    made: list[Daemon] = []

    def make(broker: Broker, like: Daemon | None = None) -> Daemon:
        root = tmp_path / f"host{len(made)}"
        root.mkdir()
        if like is None:
            src = make_tree(tmp_path / "src")
            jobs = {"p": {"source": str(src), "destination": str(tmp_path / "dst"),
                          "schedule": "every 1s"}}  # fmt: skip
            config = make_config(root, rclone_binary, jobs, broker)
        else:  # a copied config: the same instance and topics
            config = copy.deepcopy(like.config)
            config["state_dir"] = str(root / "state")
        d = Daemon(root, config)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def owner_record(broker: Broker, d: Daemon) -> dict[str, Any] | None:
    raw = retained_snapshot(broker.host, broker.port, f"{d.base}/owner").get(f"{d.base}/owner")
    return json.loads(raw) if raw else None


def availability(broker: Broker, d: Daemon) -> bytes | None:
    return retained_snapshot(broker.host, broker.port, f"{d.base}/availability").get(
        f"{d.base}/availability"
    )


def exit_code(d: Daemon, timeout: float = 30) -> int:
    assert d.process is not None
    code = d.process.wait(timeout)
    d.process = None
    return code


def serving(broker: Broker, d: Daemon) -> bool:
    record = owner_record(broker, d)
    return record is not None and record["pid"] == d.pid and availability(broker, d) == b"online"


@pytest.mark.parametrize("client_id", [None, "backup-box"])
def test_a_second_serve_of_a_live_instance_is_refused_and_the_first_is_undisturbed(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker], client_id: str | None
) -> None:
    broker = broker_factory()
    first = daemons(broker)
    if client_id is not None:  # one of the user's choosing, copied along with the config
        first.config["mqtt"]["client_id"] = client_id
        first.write(first.config)
    watch = first.collector()
    first.start()
    wait_for(lambda: serving(broker, first), 15, "the first serve to own the instance")
    record = owner_record(broker, first)
    assert record is not None and record["host"] == socket.gethostname()

    second = daemons(broker, like=first).start()
    assert exit_code(second) == 1
    log = second.log()
    assert (
        f"instance 't' is already served by mqtt-backup on host {socket.gethostname()!r}, "
        f"pid {first.pid}, since {record['started_at'][:19]}Z; not serving it twice"
    ) in log, log
    assert log.count("already served") == 1
    assert second.runs("p") == []  # refused before anything ran

    wait_for(lambda: len(first.finished("p")) >= 2, 15, "the first serve to keep running")
    assert "lost the MQTT broker" not in first.log()
    assert "already connected" not in broker.log_text()  # no client id was taken over
    assert [m.payload for m in watch.on(f"{first.base}/availability")] == [b"online"]
    assert owner_record(broker, first) == record
    assert first.stop() == 0
    watch.close()


def test_a_stopped_or_killed_owner_is_taken_over(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory()
    first = daemons(broker).start()
    wait_for(lambda: serving(broker, first), 15, "the first serve to own the instance")
    first.kill()  # the broker sends its last will: offline
    wait_for(lambda: availability(broker, first) == b"offline", 10, "the last will")
    second = daemons(broker, like=first).start()
    wait_for(lambda: serving(broker, second), 15, "the second serve to take over")
    assert second.stop() == 0  # a clean stop says offline: the next start takes over too
    assert availability(broker, second) == b"offline"
    third = daemons(broker, like=first).start()
    wait_for(lambda: serving(broker, third), 15, "the third serve to take over")
    assert third.stop() == 0


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def claim(broker: Broker, d: Daemon, host: str, pid: int, started_at: str) -> None:
    """Publish an owner record the way a serve on ``host`` would, and "online"."""
    client = Collector(broker.host, broker.port, [])
    record = {"host": host, "pid": pid, "started_at": started_at, "token": f"t{pid}"}
    client.publish(f"{d.base}/owner", json.dumps(record), retain=True)
    client.publish(f"{d.base}/availability", "online", retain=True)
    client.close()


def test_an_online_owner_elsewhere_refuses_and_a_dead_one_on_this_host_does_not(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory()
    d = daemons(broker)
    claim(broker, d, "elsewhere", 4242, "2026-01-02T03:04:05.000Z")
    d.start()
    assert exit_code(d) == 1
    assert "already served by mqtt-backup on host 'elsewhere', pid 4242, since " in d.log()

    # This host's record whose process is gone: a previous serve here that died with a
    # connection the broker has not noticed yet (a power cut). It is taken over.
    claim(broker, d, socket.gethostname(), dead_pid(), "2026-01-02T03:04:05.000Z")
    d.start()
    wait_for(lambda: serving(broker, d), 15, "the serve to take over its own stale record")
    assert d.stop() == 0


def test_a_later_claim_while_serving_gives_way_and_an_earlier_one_wins(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory()
    d = daemons(broker).start()
    wait_for(lambda: serving(broker, d), 15, "the serve to own the instance")
    record = owner_record(broker, d)
    # Another serve that got past its check at the same time (both saw no owner) claims too.
    claim(broker, d, "latecomer", 777, "2999-01-01T00:00:00.000Z")
    d.wait_log("another mqtt-backup serve (host 'latecomer', pid 777, since 2999-01-01T00:00:00Z)")
    wait_for(lambda: owner_record(broker, d) == record, 10, "the serve to restate its record")
    assert d.process is not None and d.process.poll() is None

    claim(broker, d, "pioneer", 555, "2000-01-01T00:00:00.000Z")
    assert exit_code(d) == 1
    assert "instance 't' is already served by mqtt-backup on host 'pioneer', pid 555" in d.log()
    assert availability(broker, d) == b"online"  # it left without a last will or "offline"


def test_two_serves_started_while_the_broker_was_away_end_with_one_owner(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory()
    broker.stop()
    first = daemons(broker).start()
    second = daemons(broker, like=first).start()
    for d in (first, second):
        d.wait_log("serving instance t")  # both run their jobs without the broker
    broker.start()

    def one_left() -> Daemon | None:
        codes = [d.process.poll() if d.process else None for d in (first, second)]
        if codes.count(None) == 1 and 1 in codes:
            return first if codes[0] is None else second
        return None

    survivor = wait_for(one_left, 60, "one serve to give way")
    loser = second if survivor is first else first
    assert f"pid {survivor.pid}" in loser.log()
    time.sleep(2)  # nothing to wait on: the survivor must simply still be there
    assert survivor.process is not None and survivor.process.poll() is None
    assert serving(broker, survivor)
    assert survivor.stop() == 0


def test_run_job_while_serve_owns_the_instance_takes_nothing_over(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = broker_factory()
    d = daemons(broker)
    d.config["jobs"]["p"].pop("schedule")  # manual: run-job may take the job's lock
    d.write(d.config)
    watch = d.collector()
    d.start()
    wait_for(lambda: serving(broker, d), 15, "the serve to own the instance")
    record = owner_record(broker, d)
    result = run_cli(write_config(tmp_path / "copy.yaml", d.config), "run-job", "p")
    assert result.returncode == 0, result.stderr
    watch.wait_message(d.state_topic("p"), lambda m: b'"trigger":"cli"' in m.payload, 10)
    assert "lost the MQTT broker" not in d.log()
    assert "already connected" not in broker.log_text()
    assert [m.payload for m in watch.on(f"{d.base}/availability")] == [b"online"]
    assert owner_record(broker, d) == record
    assert d.stop() == 0
    watch.close()


def test_an_offline_while_serving_is_answered_with_online(
    daemons: MakeDaemon, broker_factory: Callable[..., Broker]
) -> None:
    # What the broker sends, late, as the last will of a connection of this serve that
    # died unnoticed (a network change): while serve is connected, the instance is online.
    broker = broker_factory()
    d = daemons(broker).start()
    wait_for(lambda: serving(broker, d), 15, "the serve to own the instance")
    watch = d.collector()
    watch.publish(f"{d.base}/availability", "offline", retain=True)
    watch.wait_for(
        lambda msgs: [m.payload for m in msgs if m.topic == f"{d.base}/availability"][-2:]
        == [b"offline", b"online"],
        5,
    )
    assert availability(broker, d) == b"online"
    assert d.stop() == 0
    assert availability(broker, d) == b"offline"  # its own goodbye is not answered
    watch.close()
