"""The seeded chaos: what happens to the running system, in which order, and how hard."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mqtt_backup.errors import JobBusy
from mqtt_backup.jobs.locks import JobLock
from tests.chaos.processes import rclone_processes
from tests.chaos.rig import RUN_GRACE, SERVER_OF, SFTP_JOBS, STALL_TIMEOUT, ChaosRig

# What can happen, shuffled by the seed into rounds: each kind of trouble comes up once or
# more per round. Every seed opens with a hung sftp server, and serve is SIGKILLed at the end
# of each hang, while its rclone calls are stuck: so even a short run meets both. During a
# hang serve is not killed otherwise (that would end the stalled run as "interrupted" early
# and hide whether the stall alone ends it).
OPENING = ["hang_sftp"]
DECK = (
    ["hang_sftp", "kill_daemon", "restart_broker", "kill_sftp"]
    + ["kill_daemon", "restart_broker", "kill_sftp"]
    + ["damage_destination"] * 4
    + ["command"] * 6
    + ["write_sources"] * 14
)
# A hang outlasts the bound on any run by a margin, so a run that only ends with it shows.
HANG = STALL_TIMEOUT + RUN_GRACE + 2.0
HUNG_SERVER = "b"


@dataclass
class Driver:
    """Plays the deck. Each action draws from its own generator, seeded by the seed, the kind
    of action and its count (the 3rd write, the 2nd kill…), so that a card put back during a
    hang shifts when later actions happen, never what they do."""

    rig: ChaosRig
    seed: int
    rng: random.Random = field(init=False)
    actions: list[str] = field(default_factory=list)
    _deck_rng: random.Random = field(init=False)
    _deck: list[str] = field(default_factory=list)
    _played: dict[str, int] = field(default_factory=dict)
    _names: int = 0
    _resume_at: float | None = None

    def __post_init__(self) -> None:
        self._deck_rng = random.Random(self.seed)
        self.rng = random.Random(self.seed)
        rest = list(DECK)
        for card in OPENING:
            rest.remove(card)
        self._deck_rng.shuffle(rest)
        self._deck = [*OPENING, *rest]

    def run(self, seconds: float) -> None:
        """Disturb for ``seconds``, and on until a hung server has its full hang behind it."""
        end = time.monotonic() + seconds
        while time.monotonic() < end or self._resume_at is not None:
            self.rig.check_daemon_alive()
            if self._resume_if_due():
                continue
            if not self._deck:
                self._deck = list(DECK)
                self._deck_rng.shuffle(self._deck)
            card = self._deck.pop(0)
            if card in ("kill_daemon", "hang_sftp") and self._resume_at is not None:
                self._deck.append(card)  # later, once the server answers again
                time.sleep(0.05)
                continue
            self._play(card, getattr(self, card))
            time.sleep(self.rng.uniform(0.1, 0.8))
        self.rig.check_daemon_alive()

    def _play(self, card: str, action: Callable[[], str]) -> None:
        count = self._played[card] = self._played.get(card, 0) + 1
        self.rng = random.Random(f"{self.seed}/{card}/{count}")
        started = time.monotonic() - self.rig.t0
        self.actions.append(f"{started:6.1f}s {card} #{count}: {action()}")

    def _resume_if_due(self) -> bool:
        if self._resume_at is None or time.monotonic() < self._resume_at:
            return False
        self._resume_at = None
        self._play(
            "end_of_hang",
            lambda: self.kill_daemon(while_down=self.rig.sftp[HUNG_SERVER].resume)
            + "; sftp server b resumed",
        )
        return True

    # the actions; each returns what it did, for the replay log

    def write_sources(self) -> str:
        """Write new files and overwrite old ones in place, also ones already moved away."""
        done = []
        for _ in range(self.rng.randint(1, 4)):
            job = self.rng.choice(self.rig.jobs)
            root = self.rig.source(job)
            known = self.rig.ledger.names(job)
            if known and self.rng.random() < 0.4:
                rel = self.rng.choice(known)  # may have been verified and deleted: it comes back
            else:
                self._names += 1
                folder = self.rng.choice(["", "", "sub/", "sub/deeper/"])
                rel = f"{folder}f{self._names:04d}.bin"
            biggest = 60_000 if job in SFTP_JOBS else 4_000
            size = self.rng.randint(1, biggest)
            path = root / rel
            if path.exists() and path.stat().st_size == size:
                # Sizes differ between versions: two same-size writes in one tick of the
                # file-system clock look alike to any tool that compares size and time.
                size += 1
            self.rig.ledger.write(job, root, rel, self.rng.randbytes(size))
            done.append(f"{job}/{rel} ({size} B)")
        return ", ".join(done)

    def damage_destination(self) -> str:
        """Delete or corrupt (same size, same time) a backed-up copy whose source still exists.

        The job's own lock is held meanwhile, as a run would hold it: a run in progress could
        otherwise have verified the copy and deleted the source a moment before, and the file
        would then be lost to this test's own doing.
        """
        job = self.rng.choice(self.rig.jobs)
        try:
            lock = JobLock(self.rig.daemon.state_dir, job).acquire()
        except JobBusy:
            return f"{job} is running; left alone"
        try:
            destination = self.rig.destination(job)
            source = self.rig.source(job)
            copies = sorted(
                str(p.relative_to(destination))
                for p in destination.rglob("*")
                if p.is_file() and (source / p.relative_to(destination)).is_file()
            )
            if not copies:
                return f"{job} has no copy with its source still there"
            rel = self.rng.choice(copies)
            path = destination / rel
            if self.rng.random() < 0.5:
                path.unlink()
                return f"deleted {job}/{rel} at the destination"
            data = bytearray(path.read_bytes())
            if not data:
                path.unlink()
                return f"deleted empty {job}/{rel} at the destination"
            info = path.stat()
            spot = self.rng.randrange(len(data))
            data[spot] ^= 0xFF
            path.write_bytes(bytes(data))
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
            return f"flipped a byte of {job}/{rel} at the destination, size and time kept"
        finally:
            lock.release()

    def restart_broker(self) -> str:
        self.rig.broker.stop()
        down = self.rng.uniform(0.2, 2.0)
        time.sleep(down)
        self.rig.broker.start()
        return f"mosquitto down for {down:.1f}s (retained messages lost)"

    def kill_sftp(self) -> str:
        """SIGKILL sftp server a, at a moment an upload to it runs when there is one."""
        server = self.rig.sftp["a"]
        uploading = _wait_for(
            lambda: any(
                f"port={server.port}," in line and " copy " in line
                for line in rclone_processes(str(self.rig.root)).values()
            ),
            2.0,
        )
        server.kill()
        down = self.rng.uniform(0.5, 3.0)
        time.sleep(down)
        server.start()
        return (
            f"sftp server a killed {'mid-upload' if uploading else 'while idle'}, down {down:.1f}s"
        )

    def hang_sftp(self) -> str:
        """Freeze sftp server b for HANG seconds, and have its jobs run into it at once."""
        self.rig.sftp[HUNG_SERVER].hang()
        self._resume_at = time.monotonic() + HANG
        sent = [
            job
            for job, server in SERVER_OF.items()
            if server == HUNG_SERVER
            and self.rig.mqtt_publish(f"{self.rig.daemon.base}/jobs/{job}/run", "")
        ]
        return f"sftp server b hangs for {HANG:.0f}s; run commands sent to {sent}"

    def command(self) -> str:
        job = self.rng.choice(self.rig.jobs)
        command = self.rng.choice(["run", "run", "cancel"])
        sent = self.rig.mqtt_publish(f"{self.rig.daemon.base}/jobs/{job}/{command}", "")
        return f"{command} {job}" + ("" if sent else " (broker down: not sent)")

    def kill_daemon(self, while_down: Callable[[], None] | None = None) -> str:
        """SIGKILL serve, at a moment one of its rclone calls runs when there is one."""
        busy = _wait_for(lambda: rclone_processes(str(self.rig.root)), 2.0)
        survivors = self.rig.kill_daemon()
        if while_down is not None:
            while_down()
        down = self.rng.uniform(0.0, 1.5)
        time.sleep(down)
        self.rig.start_daemon()
        return (
            f"serve SIGKILLed {'mid-run' if busy else 'while idle'}, down {down:.1f}s; "
            f"{len(survivors)} rclone process(es) outlived it"
        )


def _wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
