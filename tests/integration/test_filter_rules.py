"""The delete's filter file, read by a real rclone: it selects exactly the planned paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mqtt_backup.engine.verify import exact_path_rules, parse_lsjson
from tests.integration.rclone_servers import write_tree
from tests.integration.test_engine_delete import ODD_NAMES

# Each planned path has neighbours that a sloppy rule would also catch: a longer name, a
# name with the glob characters unescaped, the same name one folder deeper or higher.
PLANNED = [
    *ODD_NAMES,
    "a",
    "x/a",
    "{b,c}",
    "dir{1}/f,g.txt",
    "star/*",
    "range/[ab]",
]
DECOYS = [
    "ab",
    "x/ab",
    "x/y/a",
    "b",
    "c",
    "dir1/f",
    "dir{1}/f",
    "star/anything",
    "range/a",
    "ünïcødé/fïlé ñame.txt2",
    "with space/a b.txt.bak",
    " leading.txt ",
    "trailing.txt",
]


def selected(rclone: str, source: Path, rules: Path) -> set[str]:
    done = subprocess.run(
        [rclone, "lsjson", "--recursive", "--files-only", "--filter-from", str(rules), str(source)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(parse_lsjson(done.stdout))


def test_rules_select_exactly_the_planned_paths(rclone_binary: str, tmp_path: Path) -> None:
    # Enough folders that the rules take several lines of rclone's 64 KiB line limit.
    bulk = [f"bulk/folder-{i:04d}/{'long-name-' * 3}{i}.dat" for i in range(3000)]
    planned = [*PLANNED, *bulk]
    write_tree(tmp_path / "src", dict.fromkeys([*planned, *DECOYS], b"x"))
    rules = tmp_path / "rules.txt"
    text = exact_path_rules(planned)
    rules.write_text(text, encoding="utf-8", errors="surrogateescape")
    assert text.count("\n") > 2
    assert selected(rclone_binary, tmp_path / "src", rules) == set(planned)
