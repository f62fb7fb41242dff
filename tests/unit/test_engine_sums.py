"""The source's sums: read from rclone hashsum, written where rclone reads them back exactly."""

from __future__ import annotations

import unicodedata

from mqtt_backup.engine import sums
from mqtt_backup.engine.checks import CheckResult

MD5 = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def test_the_hash_rclone_check_would_pick() -> None:
    assert sums.pick_hash({"sha1", "md5", "crc32"}, {"md5", "sha1"}) == "md5"
    assert sums.pick_hash({"sha256", "crc32"}, {"sha256", "crc32", "md5"}) == "crc32"
    assert sums.pick_hash({"quickxor"}, {"quickxor", "sha1"}) == "quickxor"
    assert sums.pick_hash({"md5"}, {"sha1"}) is None
    assert sums.pick_hash({"newhash"}, {"newhash"}) is None  # one this code cannot read


def test_hashsum_lines() -> None:
    text = (
        f"{MD5}  a.txt\n"
        f"{OTHER}   lead.txt\n"  # a name that starts with a space
        f"{MD5}  back\\slash.txt \n"  # a backslash, and a trailing space
        f"{' ' * 32}  nohash.txt\n"  # rclone prints spaces where a backend has no hash
        f"{MD5[:31]}  short.txt\n"
        f"{MD5.upper()}  upper.txt\n"
        "not a line at all\n"
    )
    assert sums.parse_hashsum(text, "md5") == {
        "a.txt": MD5,
        " lead.txt": OTHER,
        "back\\slash.txt ": MD5,
    }


def test_a_name_seen_twice_has_no_hash() -> None:
    text = f"{MD5}  twice\n{OTHER}  twice\n{MD5}  once\n"
    assert sums.parse_hashsum(text, "md5") == {"once": MD5}


def test_widths_follow_the_hash_type() -> None:
    crc = "0a1b2c3d"
    assert sums.parse_hashsum(f"{crc}  x\n{MD5}  y\n", "crc32") == {"x": crc}


def test_the_sum_list_carries_what_rclone_reads_back() -> None:
    nfd = unicodedata.normalize("NFD", "é.txt")
    listed = ["a.txt", " lead.txt", "trail ", "back\\slash", "ünï.txt", nfd, "nohash", "x\u0378"]
    hashes = {name: MD5 for name in listed if name != "nohash"}
    found = sums.sum_list(listed, hashes)
    assert found.names == {"a.txt", " lead.txt", "trail ", "back\\slash", "ünï.txt"}
    # A decomposed name (rclone looks lines up in NFC), a file without a hash, and a
    # character this Python does not know are compared by check instead.
    assert found.others == sorted([nfd, "nohash", "x\u0378"])
    assert found.text.splitlines() == [f"{MD5}  {name}" for name in sorted(found.names)]


def test_a_line_longer_than_rclone_reads_is_not_carried() -> None:
    long = "d/" * 1990 + "x"
    found = sums.sum_list([long, "a"], {long: MD5, "a": MD5})
    assert found.names == {"a"} and found.others == [long]


def test_a_name_with_a_line_break_makes_every_hash_untrusted() -> None:
    # Split across lines of hashsum's output, it could read as another file's line.
    found = sums.sum_list(["a", "b\nc"], {"a": MD5, "c": OTHER})
    assert found.names == frozenset() and found.others == ["a"]
    assert found.text == ""


def test_a_comparison_proves_only_what_it_was_asked() -> None:
    seen = CheckResult({"a", "é"}, {"b"}, {"c"}, set(), last_error="x")
    asked = seen.about({"a", "b", "c"})
    assert asked.sets() == ({"a"}, {"b"}, {"c"}, set())
    both = asked.joined(CheckResult({"é"}, set(), set(), {"d"}))
    assert both.sets() == ({"a", "é"}, {"b"}, {"c"}, {"d"})
    assert both.last_error == "x"
