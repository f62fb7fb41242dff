"""The deletion plan: every keep reason, and only proven files deleted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mqtt_backup.engine import verify as v

OLD = "2026-01-01T00:00:00.123456789Z"
NEW = "2026-11-29T05:00:00+00:00"
CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)


def plan(**overrides: object) -> v.DeletionPlan:
    before = {
        "ok": (1, OLD),
        "young": (1, NEW),
        "changed": (1, OLD),
        "gone": (1, OLD),
        "bad": (1, OLD),
        "missing": (1, OLD),
        "err": (1, OLD),
        "unchecked": (1, OLD),
        "new\nline": (1, OLD),
    }
    after = dict(before)
    after["changed"] = (2, OLD)
    after["late"] = (1, OLD)
    del after["gone"]
    args: dict[str, object] = {
        "matched": {"ok", "young", "changed", "gone", "late", "new\nline"},
        "before": before,
        "after": after,
        "not_modified_after": CUTOFF,
        "differ": {"bad"},
        "missing": {"missing"},
        "errors": {"err"},
    }
    args.update(overrides)
    return v.plan_deletion(**args)  # type: ignore[arg-type]


def test_every_reason() -> None:
    result = plan()
    assert result.delete == ["ok"]
    assert result.kept == {
        v.TOO_YOUNG: 1,
        v.CHANGED: 2,
        v.DIFFERS: 1,
        v.MISSING: 1,
        v.CHECK_ERROR: 1,
        v.NOT_CHECKED: 1,
        v.APPEARED: 1,
        v.NOT_LISTABLE: 1,
    }
    assert result.verified == 2  # ok and young: proven; young is kept for its age
    assert result.kept_files[v.CHANGED] == ["changed", "gone"]
    assert result.kept_files[v.DIFFERS] == ["bad"]


def test_kept_names_are_capped() -> None:
    before = {f"f{i:02}": (1, NEW) for i in range(20)}
    result = v.plan_deletion(
        matched=set(before), before=before, after=before, not_modified_after=CUTOFF
    )
    assert result.kept == {v.TOO_YOUNG: 20}
    assert result.kept_files[v.TOO_YOUNG] == [f"f{i:02}" for i in range(v.NAMES_KEPT)]


def test_warning_names_what_a_later_run_will_not_settle() -> None:
    assert v.kept_warning({v.TOO_YOUNG: 3, v.CHANGED: 1, v.DRY_RUN: 2}, {}) is None
    sentence = v.kept_warning(
        {v.TOO_YOUNG: 3, v.DIFFERS: 1, v.MISSING: 3},
        {v.DIFFERS: ["a.jpg"], v.MISSING: ["b", "c", "d"]},
    )
    assert sentence == (
        "kept source files not proven at the destination: 3 files missing at the "
        "destination (b, c, …); 1 file differing at the destination even after a second "
        "copy (a.jpg)"
    )


def test_unaccounted_are_files_both_listings_saw_and_no_report_named() -> None:
    before = {"a": (1, OLD), "b": (1, OLD), "c": (1, OLD), "gone": (1, OLD), "x\ny": (1, OLD)}
    after = {"a": (1, OLD), "b": (2, OLD), "c": (1, OLD), "new": (1, OLD), "x\ny": (1, OLD)}
    assert v.unaccounted(before, after, {"a"}, {"b"}, set(), set()) == ["c"]
    assert v.unaccounted(before, after, {"a"}, set(), {"b"}, {"c"}) == []


def test_paths_in_no_listing_are_not_counted() -> None:
    result = v.plan_deletion(
        matched={"new", "line"}, before={}, after={}, not_modified_after=CUTOFF
    )
    assert result.delete == [] and result.kept == {}


def test_matched_but_not_in_first_listing_is_kept() -> None:
    result = v.plan_deletion(
        matched={"a"}, before={}, after={"a": (1, OLD)}, not_modified_after=CUTOFF
    )
    assert result.delete == [] and result.kept == {v.APPEARED: 1}


def test_a_file_only_the_second_listing_saw_appeared() -> None:
    # The comparison is asked about the first listing's files only: no verdict at all.
    result = v.plan_deletion(
        matched=set(), before={}, after={"new": (1, OLD)}, not_modified_after=CUTOFF
    )
    assert result.kept == {v.APPEARED: 1}
    assert v.kept_warning(result.kept, result.kept_files) is None


def test_names_rclone_cannot_be_given_exactly() -> None:
    assert v.listable("a b/ünï.txt")
    assert not v.listable("new\nline") and not v.listable("cr\rx")
    # rclone's JSON listing shows bytes that are not UTF-8 as U+FFFD.
    assert not v.listable("bad\ufffd.txt")
    result = v.plan_deletion(
        matched={"bad\ufffd.txt"},
        before={"bad\ufffd.txt": (1, OLD)},
        after={"bad\ufffd.txt": (1, OLD)},
        not_modified_after=CUTOFF,
    )
    assert result.delete == [] and result.kept == {v.NOT_LISTABLE: 1}
    assert v.unaccounted({"bad\ufffd.txt": (1, OLD)}, {"bad\ufffd.txt": (1, OLD)}) == []


def test_unparsable_time_is_too_young() -> None:
    result = v.plan_deletion(
        matched={"a"},
        before={"a": (1, "yesterday")},
        after={"a": (1, "yesterday")},
        not_modified_after=CUTOFF,
    )
    assert result.kept == {v.TOO_YOUNG: 1}


def test_parse_time_formats() -> None:
    assert v.parse_rclone_time(OLD) == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert v.parse_rclone_time("2026-11-29T05:04:18.313483+00:00") is not None
    assert v.parse_rclone_time("2026-11-29T05:04:18") is None


def test_parse_lsjson_skips_dirs() -> None:
    entries = [
        {"Path": "a b", "Size": 3, "ModTime": OLD, "IsDir": False},
        {"Path": "d", "IsDir": True},
    ]
    text = json.dumps(entries)
    assert v.parse_lsjson(text) == {"a b": (3, OLD)}
    assert v.parse_lsjson("") == {}


def test_report_keeps_spaces() -> None:
    assert v.read_report(" lead\ntrail \n#hash\n") == {" lead", "trail ", "#hash"}


def test_exact_path_rules_escape_and_group() -> None:
    rules = v.exact_path_rules(["d/{a},b", "d/*", "top", "x y/ z "])
    assert rules.splitlines() == [
        "+ /{top,d/{\\*,\\{a\\}\\,b},x y/{ z }}",
        "- **",
    ]


def test_exact_path_rules_pack_many_folders_into_few_rules() -> None:
    # rclone tries each rule on each file: 1,000 folders must not make 1,000 rules.
    paths = [f"f{i:04d}/{name}" for i in range(1000) for name in ("a.jpg", "b.jpg")]
    lines = v.exact_path_rules(paths).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("+ /{f0000/{a.jpg,b.jpg},f0001/{a.jpg,b.jpg},")


def test_exact_path_rules_stay_under_rclones_line_limit_in_bytes() -> None:
    # Go's bufio.Scanner refuses lines over 64 KiB, and "é" takes two bytes of a line.
    names = [f"d/{'é' * 100}{i}" for i in range(1000)]
    names += [f"e/\udcff{'x' * 50}{i}" for i in range(2000)]  # a stray byte, as Python reads it
    lines = v.exact_path_rules(names).splitlines()
    assert len(lines) > 3
    assert all(len(line.encode("utf-8", "surrogateescape")) <= 60_000 for line in lines)
    assert all(line.startswith("+ /{") and line.endswith("}") for line in lines[:-1])


def test_exact_path_rules_refuse_line_breaks() -> None:
    for bad in ("a\nb", "a\rb"):
        with pytest.raises(ValueError, match="line break"):
            v.exact_path_rules(["ok", bad])


def test_exact_path_rules_of_nothing_select_nothing() -> None:
    assert v.exact_path_rules([]) == "- **\n"
