"""Hooks: how they are written in the config, what their endings mean, what they are told."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mqtt_backup.config.loader import load_config, parse_config
from mqtt_backup.config.models import PASSWORD_ENV
from mqtt_backup.engine.events import RunOutcome
from mqtt_backup.engine.hooks import (
    HookResult,
    HookRun,
    after_outcome,
    before_outcome,
    ending,
    environment,
    last_line,
)
from mqtt_backup.errors import ConfigError
from mqtt_backup.redaction.secrets import Masker, config_secrets

JOB = "jobs:\n  photos:\n    source: /srv/photos\n    destination: nas:photos\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.errors


def result(kind: Any = "before", ending: Any = "ok", code: int | None = 0, output: str = "") -> Any:
    return HookResult(kind, 1, "mount-disk", ending, code, 0.1, 60.0, output)


# The config


def test_a_hook_is_an_argv_list_or_a_mapping_with_its_timeout() -> None:
    config = parse_config(
        JOB
        + "    hooks:\n"
        + "      before:\n"
        + "        - [/usr/local/bin/mount-disk, --wait]\n"
        + "        - run: [pg_dump, --file=/srv/dump.sql, app]\n"
        + "          timeout: 30m\n"
    )
    first, second = config.job_hooks("photos").before or []
    assert first.run == ["/usr/local/bin/mount-disk", "--wait"]
    assert first.timeout == timedelta(minutes=5)  # the default
    assert second.run == ["pg_dump", "--file=/srv/dump.sql", "app"]
    assert second.timeout == timedelta(minutes=30)
    assert (first.program, second.program) == ("mount-disk", "pg_dump")


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        # A string is never split, nor given to a shell.
        ('before: ["mount /mnt/usb"]', "before.0: a hook is a list: the program and its"),
        ('before: "mount /mnt/usb"', "before: write a list of hooks"),
        ("before: [{run: mount /mnt/usb}]", "before.0.run: write the program and its arguments"),
        # YAML reads 0755 as 493: a number is refused, not passed on changed.
        ("before: [[chmod, 0755, /mnt]]", "before.0.run: argument 2 (493) is not text; quote it"),
        ("before: [[]]", "before.0.run: is empty; name the program to run"),
        ("before: [{run: [ls], timeout: 0s}]", "before.0.timeout: must be longer than 0s"),
        ("after: [{run: [ls], timout: 1m}]", "after.0.timout: unknown key"),
        ("afterwards: [[ls]]", "hooks.afterwards: unknown key"),
    ],
)
def test_hooks_written_wrongly_are_refused_by_key_path(hooks: str, expected: str) -> None:
    [error] = errors_of(JOB + "    hooks:\n      " + hooks + "\n")
    assert error.startswith("jobs.photos.hooks.")
    assert expected in error


def test_each_list_a_job_sets_replaces_the_global_one() -> None:
    config = parse_config(
        "hooks:\n"
        "  before: [[global-before]]\n"
        "  on_failure: [[notify]]\n"
        "  after: [[global-after]]\n"
        "jobs:\n"
        "  own:\n    source: /a\n    destination: nas:a\n"
        "    hooks: {before: [[own-before]], after: []}\n"
        "  inherits:\n    source: /b\n    destination: nas:b\n"
    )
    own = config.job_hooks("own")
    assert [h.run for h in own.before or []] == [["own-before"]]
    assert [h.run for h in own.on_failure or []] == [["notify"]]
    assert own.after == []  # switched off
    inherits = config.job_hooks("inherits")
    assert [h.run for h in inherits.after or []] == [["global-after"]]
    bare = parse_config(JOB).job_hooks("photos")
    assert (bare.before, bare.on_failure, bare.after) == ([], [], [])


def test_a_program_with_a_folder_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "mqtt-backup.yaml"
    path.parent.mkdir()
    path.write_text(
        "hooks: {after: [[./hooks/unmount.sh], [umount, ./mnt]]}\n"
        + JOB
        + "    hooks: {before: [{run: [../bin/mount.sh, ./x]}]}\n"
    )
    hooks = load_config(path).job_hooks("photos")
    assert [h.run for h in hooks.before or []] == [[f"{tmp_path}/conf/../bin/mount.sh", "./x"]]
    # A bare name is looked up on PATH, as a shell does; arguments are the program's business.
    assert [h.run for h in hooks.after or []] == [
        [f"{tmp_path}/conf/hooks/unmount.sh"],
        ["umount", "./mnt"],
    ]


def test_secret_flags_in_a_hook_are_masked_everywhere() -> None:
    config = parse_config(
        "hooks: {on_failure: [[notify, --token, tok-3f9a2b77]]}\n"
        + JOB
        + "    hooks: {before: [[mysqldump, --password=hunter22, app]]}\n"
    )
    masker = Masker(config_secrets(config, environ={}))
    assert masker.mask("auth hunter22 failed, tok-3f9a2b77") == "auth *** failed, ***"


# Endings and what they do to the run


@pytest.mark.parametrize(
    ("kind", "code", "cancelled", "timed_out", "expected"),
    [
        ("before", 0, False, False, "ok"),
        ("before", 1, False, False, "failed"),
        ("before", 75, False, False, "skip"),
        # Only a before hook can skip: after the backup there is nothing left to skip.
        ("after", 75, False, False, "failed"),
        ("on_failure", 75, False, False, "failed"),
        ("before", -2, True, False, "cancelled"),
        ("before", -15, False, True, "timed_out"),
    ],
)
def test_what_an_exit_means(
    kind: Any, code: int, cancelled: bool, timed_out: bool, expected: str
) -> None:
    assert ending(kind, code, cancelled=cancelled, timed_out=timed_out) == expected


def test_before_hooks_decide_whether_the_backup_runs() -> None:
    assert before_outcome([]) is None
    assert before_outcome([result(), result()]) is None
    skipped = before_outcome([result(), result(ending="skip", code=75, output="no disk\n\n")])
    assert skipped == RunOutcome(
        "skipped", error="skipped by before hook 1 (mount-disk): no disk", log_tail=("no disk",)
    )
    said = "".join(f"line {n}\n" for n in range(30)) + "mount: busy"
    failed = before_outcome([result(ending="failed", code=32, output=said)])
    assert failed is not None
    assert failed.error == "before hook 1 (mount-disk) exited 32: mount: busy"
    # Its last lines, as rclone's are for a backup, for the monitors to show.
    assert failed.log_tail == (*(f"line {n}" for n in range(11, 30)), "mount: busy")
    assert not failed.retryable
    stopped = before_outcome([result(ending="timed_out", code=None)])
    assert stopped is not None and stopped.error == (
        "before hook 1 (mount-disk) did not finish within 1m; stopped"
    )
    assert before_outcome([result(ending="cancelled", code=None)]) == RunOutcome(
        "cancelled", error="cancelled"
    )


def test_a_failed_after_hook_leaves_a_completed_run_completed_with_a_warning() -> None:
    done = RunOutcome("completed", warning="kept 1 file: differs")
    bad = result("after", "failed", 1, "umount: target is busy")
    warned = after_outcome(done, [bad])
    assert warned.status == "completed"
    assert warned.warning == (
        "kept 1 file: differs; after hook 1 (mount-disk) exited 1: umount: target is busy"
    )
    assert after_outcome(done, [result("after")]) == done
    failed = RunOutcome("failed", error="source directory not found")
    assert after_outcome(failed, [bad]) == failed


def test_a_hook_that_could_not_start_says_why() -> None:
    missing = HookResult(
        "before", 2, "mount-disk", "not_started", None, 0, 60, detail="mount-disk not found"
    )
    assert missing.sentence() == "before hook 2 (mount-disk) could not start: mount-disk not found"
    assert before_outcome([missing]) == RunOutcome("failed", error=missing.sentence())


def test_the_sentence_quotes_the_last_line_with_text_cut_short() -> None:
    assert last_line("first\nsecond  \n \n") == "second"
    assert last_line("") == ""
    long = last_line("x" * 500)
    assert len(long) == 200 and long.endswith("…")


# What a hook is told


def test_the_environment_carries_the_run_and_never_the_broker_password() -> None:
    run = HookRun("photos", "Family photos", "abc123", "schedule", 2, dry_run=True)
    base = {"PATH": "/usr/bin", PASSWORD_ENV: "broker-secret", "HOME": "/root"}
    env = environment(
        base, run, "on_failure", status="failed", error="no space\0left", will_retry=True
    )
    assert PASSWORD_ENV not in env
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert {k: v for k, v in env.items() if k.startswith("MQTT_BACKUP_")} == {
        "MQTT_BACKUP_HOOK": "on_failure",
        "MQTT_BACKUP_JOB_ID": "photos",
        "MQTT_BACKUP_JOB_NAME": "Family photos",
        "MQTT_BACKUP_RUN_ID": "abc123",
        "MQTT_BACKUP_TRIGGER": "schedule",
        "MQTT_BACKUP_ATTEMPT": "2",
        "MQTT_BACKUP_DRY_RUN": "1",
        "MQTT_BACKUP_STATUS": "failed",
        "MQTT_BACKUP_ERROR": "no spaceleft",
        "MQTT_BACKUP_WILL_RETRY": "1",
    }
    before = environment(base, run, "before", status="running")
    assert (before["MQTT_BACKUP_ERROR"], before["MQTT_BACKUP_WILL_RETRY"]) == ("", "0")


def test_a_hook_is_kept_in_history_as_a_record() -> None:
    record = result("after", "failed", 3, "bye\n").record()
    assert record == {
        "hook": "after",
        "number": 1,
        "program": "mount-disk",
        "ending": "failed",
        "exit_code": 3,
        "seconds": 0.1,
        "output": "bye\n",
        "dropped": 0,
        "sentence": "after hook 1 (mount-disk) exited 3: bye",
    }


def test_the_examples_in_the_hooks_page_are_valid_configs() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    whole = [block for block in blocks if not block.startswith(" ")]
    assert len(whole) >= 6
    for block in whole:
        parse_config(block)  # raises ConfigError, naming the key, if one is wrong
    # An indented block is one more before hook of the example above it.
    job = "jobs:\n  j:\n    source: /a\n    destination: /b\n    hooks:\n      before:\n"
    for fragment in [block for block in blocks if block.startswith(" ")]:
        assert parse_config(job + fragment).job_hooks("j").before
