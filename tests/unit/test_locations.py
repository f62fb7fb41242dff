"""Local paths compared as the disk sees them, however they are spelled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mqtt_backup.config.loader import parse_config
from mqtt_backup.engine.locations import describe, local_path, overlap
from mqtt_backup.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "local"),
    [
        ("/srv/photos", "/srv/photos"),
        ("photos", "photos"),
        ("./a:b", "./a:b"),
        (":local:/srv/photos", "/srv/photos"),
        (":local,case_insensitive=true:/srv/photos", "/srv/photos"),
        (":local:", "."),
        ("nas:photos", None),
        (":sftp,host=x,pass='a:/b':photos", None),
        ("nas,pass='x:y':photos", None),
        (":sftp,pass=a'b:c':photos", None),
        ("rem*ote:photos", None),
    ],
)
def test_local_path(spec: str, local: str | None) -> None:
    assert local_path(spec) == local


def test_describe_leaves_out_parameters() -> None:
    assert describe(":sftp,host=x,pass='se:cret':backup") == ":sftp:backup"
    assert describe("nas,pass=secret:backup") == "nas:backup"
    assert describe("nas:backup") == "nas:backup"
    assert describe("/srv/a,b:c") == "/srv/a,b:c"
    # A quote inside a value does not open a quoted part (rclone reads it so).
    assert describe(":sftp,pass=a'b,user=u:backup") == ":sftp:backup"
    # rclone would refuse this one; its secrets are masked all the same.
    assert describe(":sftp,pass='open:backup") == ":sftp,pass=***"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


@pytest.mark.parametrize(
    "spelling",
    [
        "{t}/./data",
        "{t}//data",
        "{t}/data/../data",
        "{t}/data/.",
        "{t}/data/",
        "data",
        "./data",
        "{t}/link",
        ":local:{t}/data",
        ":local,links:{t}/link/",
    ],
)
def test_the_source_under_another_name_is_the_same_folder(data: Path, spelling: str) -> None:
    destination = spelling.format(t=data.parent)
    found = overlap(str(data), destination)
    assert found is not None and "same folder" in found


@pytest.mark.parametrize("spelling", ["{t}/data/sub", "{t}/link/new", "data/not/yet/there"])
def test_a_destination_inside_the_source(data: Path, spelling: str) -> None:
    found = overlap(str(data), spelling.format(t=data.parent))
    assert found is not None and "inside the source" in found


def test_a_source_inside_the_destination(data: Path) -> None:
    found = overlap(str(data / "sub"), str(data.parent / "link"))
    assert found is not None and "inside the destination" in found


def test_separate_folders_and_remotes_do_not_overlap(data: Path) -> None:
    assert overlap(str(data), str(data.parent / "other")) is None
    assert overlap(str(data), str(data.parent / "data-backup")) is None  # a prefix, not a parent
    assert overlap(str(data), "nas:data") is None


def test_validate_refuses_it_with_the_key_path_and_line(data: Path) -> None:
    text = f"jobs:\n  photos:\n    source: {data}\n    destination: {data.parent}/link\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.errors == [
        f"jobs.photos: source and destination are the same folder ({data}); "
        "the destination must be separate storage (line 2)"
    ]


def test_a_symlinked_parent_is_seen_through(data: Path) -> None:
    os.symlink(data / "sub", data.parent / "sublink")
    found = overlap(str(data), str(data.parent / "sublink" / "x"))
    assert found is not None and "inside the source" in found
