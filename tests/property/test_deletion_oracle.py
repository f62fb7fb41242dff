"""Try to make verify-then-delete delete a file that is not proven stored elsewhere.

Hypothesis draws a small source tree with awkward names, a spelling of the destination
(other storage, or the source itself under another name, or a folder inside or around
it), rclone flags and RCLONE_* variables, a verification mode, an age limit, filter
rules, and faults that strike between the transfer and the verification or the
deletion. The engine runs for real (in-process, with real rclone); afterwards the disk
is checked against the one promise in ``oracle.py``. Refusing is always allowed: a
config error or a failed run passes as long as the disk shows no loss. A fault-free run
to other storage with only harmless flags must delete what it verified, so that a tool
that never deletes cannot pass.

``ORACLE_EXAMPLES=5000`` runs a longer search; ``ORACLE_SEED=<n>`` a different one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, note, seed, settings, target

from mqtt_backup.config.loader import parse_config
from mqtt_backup.engine.events import Event, PhaseStarted, RunOutcome
from mqtt_backup.engine.runner import execute
from mqtt_backup.errors import ConfigError
from tests.integration.rclone_servers import COMPARISONS, wrap_rclone
from tests.property import faults, oracle
from tests.property.cases import ARGS, ENV, FILTERS, OLD, Example, examples, real_folder, spell

EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "70"))
SEED = os.environ.get("ORACLE_SEED")


@dataclass(frozen=True)
class Harness:
    """What every example shares: one rclone behind the fault hooks and its work folder."""

    base: Path
    work_dir: Path
    faults: Path  # <point>.json: the faults due at that point; done.jsonl: those applied
    binary: str


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, rclone_binary: str) -> Harness:
    base = tmp_path_factory.mktemp("oracle")
    due = base / "faults"
    due.mkdir()

    def hook(point: str) -> str:
        spec = shlex.quote(str(due / f"{point}.json"))
        python = " ".join(shlex.quote(s) for s in (sys.executable, "-I", "-S", faults.__file__))
        # Only a fault that is due costs an interpreter start.
        return f"if [ -e {spec} ]; then {python} {spec}; fi"

    binary = rclone_binary
    for point, command, after in (
        ("before-check", COMPARISONS, False),
        ("after-check", COMPARISONS, True),
        ("before-delete", "delete", False),
        ("after-hash", "hashsum", True),
    ):
        folder = base / "rclone" / point
        folder.mkdir(parents=True)
        binary = wrap_rclone(folder, binary, command, hook(point), after=after)
    # One work folder for all runs: its parent keeps rclone's version, asked once.
    return Harness(base / "examples", base / "work" / "runs", due, binary)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ (rclone inherits them) while the block runs, then undone."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_source(root: Path, example: Example, contents: dict[str, bytes]) -> None:
    for name, content in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if name in example.old:
            os.utime(path, (OLD, OLD))


def preseed(source: Path, destination: Path, name: str) -> None:
    """A corrupted copy with the source's size and time: ``rclone copy`` skips it."""
    data = bytearray((source / name).read_bytes())
    if not data:
        return
    data[0] ^= 0xFF
    target = destination / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    stat = (source / name).stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def fault_spec(
    example: Example, source: Path, destination: Path, root: Path
) -> dict[str, list[dict[str, Any]]]:
    spec: dict[str, list[dict[str, Any]]] = {}
    for fault in example.faults:
        if fault.kind in ("append", "create"):
            path = source / fault.target
        elif fault.kind.startswith("root_"):
            path = destination
        else:
            path = destination / fault.target
        entry = {"kind": fault.kind, "path": str(path), "to": str(root / "aside")}
        spec.setdefault(fault.point, []).append(entry)
    return spec


def config_text(example: Example, source: str, destination: str, root: Path, binary: str) -> str:
    job: dict[str, Any] = {
        "source": source,
        "destination": destination,
        "operation": "copy",
        "deletion": {
            "mode": "verify_then_delete",
            "verify": example.verify,
            "min_age": example.min_age,
        },
    }
    if FILTERS[example.filters]:
        job["filters"] = FILTERS[example.filters]
    if example.job_args:
        job["extra_args"] = [a for k in example.job_args for a in ARGS[k]]
    rclone: dict[str, Any] = {"binary": binary}
    if example.global_args:
        rclone["extra_args"] = [a for k in example.global_args for a in ARGS[k]]
    config = {
        "instance": "oracle",
        "state_dir": str(root / "state"),
        "rclone": rclone,
        "jobs": {"oracle": job},
    }
    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False)


def applied_faults(folder: Path) -> list[dict[str, Any]]:
    done = folder / "done.jsonl"
    if not done.exists():
        return []
    return [json.loads(line) for line in done.read_text(encoding="utf-8").splitlines()]


def prepare_faults(folder: Path, spec: dict[str, list[dict[str, Any]]]) -> None:
    """Leave only this example's faults due (an earlier run may have stopped before its own)."""
    for old in folder.iterdir():
        old.unlink()
    for point, due in spec.items():
        (folder / f"{point}.json").write_text(json.dumps(due), encoding="utf-8")


def make_readable(applied: list[dict[str, Any]]) -> None:
    """Undo ``chmod 000`` faults (not root), so the files can be read and removed."""
    for fault in applied:
        if fault.get("chmod"):
            Path(fault["path"]).chmod(0o755)


@dataclass(frozen=True)
class Scene:
    """One example on disk: the source, and where the destination really is."""

    contents: dict[str, bytes]
    source: Path
    source_real: Path
    destination: str  # as written in the config
    destination_real: Path


def set_up(example: Example, root: Path) -> Scene:
    source = root / "data"
    contents = example.contents()
    write_source(source, example, contents)
    (root / "backup").mkdir()
    (root / "to-data").symlink_to(source)
    (root / "to-backup").symlink_to(root / "backup")
    spelled = spell(example.destination, root)
    scene = Scene(contents, source, Path(os.path.realpath(source)), spelled, real_folder(spelled))
    if example.preseed is not None:
        preseed(source, scene.destination_real, example.preseed)
    return scene


def run_engine(harness: Harness, text: str, env: dict[str, str]) -> RunOutcome | ConfigError:
    """Load the config and run the job once, as the daemon would; a ConfigError is returned."""
    with environment(env):
        try:
            config = parse_config(text)
        except ConfigError as exc:
            return exc
        events: list[Event] = []
        outcome = execute(
            "oracle",
            config.jobs["oracle"],
            config.rclone,
            on_event=events.append,
            cancel=threading.Event(),
            work_dir=harness.work_dir,
        )
    note(f"phases: {[e.phase for e in events if isinstance(e, PhaseStarted)]}")
    return outcome


def account_for(
    applied: list[dict[str, Any]],
    scene: Scene,
    known: dict[str, bytes],
    destination_before: dict[str, bytes],
) -> None:
    """What the faults themselves did: new source bytes, destination files they removed."""
    for fault in applied:
        kind, path = fault["kind"], Path(fault["path"])
        if kind == "append":
            rel = path.relative_to(scene.source_real).as_posix()
            known[rel] = known.get(rel, b"") + faults.APPENDED
        elif kind == "create":
            known[path.relative_to(scene.source_real).as_posix()] = faults.CREATED
        elif kind in ("remove", "unreadable"):
            destination_before.pop(path.relative_to(scene.destination_real).as_posix(), None)
        elif kind.startswith("root_"):
            destination_before.clear()


def run(harness: Harness, example: Example, root: Path) -> None:
    scene = set_up(example, root)
    known = oracle.snapshot(scene.source_real)
    destination_before = {
        path: content
        for path, content in oracle.snapshot(scene.destination_real).items()
        if not oracle.within(os.path.realpath(scene.destination_real / path), scene.source_real)
    }
    spec = fault_spec(example, scene.source_real, scene.destination_real, root)
    prepare_faults(harness.faults, spec)
    text = config_text(example, str(scene.source), scene.destination, root, harness.binary)
    env = {key: ENV[key] for key in example.env}
    note(f"config:\n{text}")
    note(f"environment: {env}")
    note(
        "source tree (path: size, old?): "
        + ", ".join(
            f"{p!r}: {len(c)}{' old' if p in example.old else ''}"
            for p, c in scene.contents.items()
        )
    )

    outcome = run_engine(harness, text, env)
    applied = applied_faults(harness.faults)
    make_readable(applied)
    note(f"faults applied: {applied}")
    note(f"outcome: {outcome!r}")
    # Seen with --hypothesis-show-statistics: how the examples ended.
    event("refused when loaded" if isinstance(outcome, ConfigError) else f"run {outcome.status}")
    if example.must_delete():
        event("a plain run that must delete")

    account_for(applied, scene, known, destination_before)
    source_after = oracle.snapshot(scene.source_real)
    destination_after = oracle.snapshot(scene.destination_real)
    found = oracle.check(
        known=known,
        source_after=source_after,
        destination_after=destination_after,
        destination_before=destination_before,
        source_real=scene.source_real,
        destination_real=scene.destination_real,
    )
    # A run that deletes part of the source and keeps the rest had to choose file by
    # file: that is where a wrong choice loses a file. Steer the search toward them.
    deleted = len(set(known) - set(source_after))
    target(float(min(deleted, len(known) - deleted)), label="files both deleted and kept")
    # One assertion per kind of loss: Hypothesis reports each as a bug of its own.
    assert not found.deleted_from_same_storage, found.deleted_from_same_storage
    assert not found.deleted_without_copy, found.deleted_without_copy
    assert not found.changed_in_source, found.changed_in_source
    assert not found.deleted_at_destination, found.deleted_at_destination

    if example.must_delete():
        contents = scene.contents
        old_enough = {p for p in contents if example.min_age == "0s" or p in example.old}
        expected_gone = {p for p in old_enough if example.selected(p)}
        gone = set(contents) - set(source_after)
        missing = {p for p in contents if example.selected(p) and p not in destination_after}
        assert (gone, missing) == (expected_gone, set()), (
            f"a plain run to other storage deleted {sorted(gone)}, expected "
            f"{sorted(expected_gone)}; not copied: {sorted(missing)}; outcome {outcome!r}"
        )


def _search(test: Any) -> Any:
    test = settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        print_blob=True,
        # The explain phase reruns many variations of each failure: too slow for a real run.
        phases=[p for p in Phase if p is not Phase.explain],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    return seed(int(SEED))(test) if SEED is not None else test


@pytest.mark.timeout(120 + 3 * EXAMPLES)
@_search
@given(example=examples())
def test_no_file_is_deleted_without_an_identical_copy_elsewhere(
    harness: Harness, example: Example
) -> None:
    harness.base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=harness.base))
    try:
        run(harness, example, root)
    finally:
        for fault in applied_faults(harness.faults):
            with contextlib.suppress(OSError):
                make_readable([fault])
        shutil.rmtree(root, ignore_errors=True)
