"""The on-disk oracle itself: it must see every kind of loss, and nothing else."""

from __future__ import annotations

from pathlib import Path

from tests.integration.rclone_servers import write_tree
from tests.property.oracle import check, snapshot

FILES = {"a.jpg": b"aaaa", "sub/b c.jpg": b"bb", "empty": b""}


def verdict(tmp_path: Path, destination: Path, before: dict[str, bytes] | None = None) -> list[str]:
    source = tmp_path / "data"
    return check(
        known=FILES,
        source_after=snapshot(source),
        destination_after=snapshot(destination),
        destination_before=before or {},
        source_real=source,
        destination_real=destination,
    ).all()


def test_a_deletion_backed_by_identical_copies_is_no_loss(tmp_path: Path) -> None:
    write_tree(tmp_path / "backup", FILES)
    write_tree(tmp_path / "data", {"a.jpg": b"aaaa"})
    assert verdict(tmp_path, tmp_path / "backup") == []


def test_each_kind_of_loss_is_seen(tmp_path: Path) -> None:
    write_tree(tmp_path / "backup", {"a.jpg": b"AAAA"})  # same size, other bytes
    write_tree(tmp_path / "data", {"empty": b"changed"})
    found = verdict(tmp_path, tmp_path / "backup", before={"old.txt": b"o"})
    assert found == [
        "'a.jpg' was deleted from the source, but the destination holds other bytes "
        "(4 in the source, 4 there)",
        "'sub/b c.jpg' was deleted from the source and is not at the destination",
        "'empty' is still in the source but its bytes changed (0 bytes before, 7 after)",
        "'old.txt' was deleted from the destination",
    ]


def test_a_copy_that_lies_in_the_source_is_no_copy(tmp_path: Path) -> None:
    source = tmp_path / "data"
    write_tree(source, {f"inside/{name}": content for name, content in FILES.items()})
    (tmp_path / "link").symlink_to(source)
    for destination in (tmp_path / "link", source / "inside"):
        found = verdict(tmp_path, destination)
        assert len(found) == len(FILES), destination
        assert all("in the source" in line for line in found), found


def test_a_source_file_is_no_copy_of_another_in_a_destination_holding_the_source(
    tmp_path: Path,
) -> None:
    # Copied into its parent, the source's data/x lands on the source's own x.
    source = tmp_path / "data"
    write_tree(source, {"x": b"x"})
    found = check(
        known={"x": b"x", "data/x": b"x"},
        source_after=snapshot(source),
        destination_after=snapshot(tmp_path),
        destination_before={},
        source_real=source,
        destination_real=tmp_path,
    )
    assert found.all() == [
        f"'data/x' was deleted, but its copy at the destination {str(tmp_path)!r} is "
        f"{str(source / 'x')!r}, in the source {str(source)!r}: no copy is elsewhere"
    ]
