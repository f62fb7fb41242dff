"""The cases the deletion oracle tries: trees, destinations, flags, variables and faults.

Each is drawn by Hypothesis as an ``Example``, a plain value whose repr reads as the
case (file bytes are drawn as a size and a seed, so a failing case prints short).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hypothesis import strategies as st

OLD = 1_600_000_000  # 2020: older than any min_age drawn here

# Names rclone, YAML, filter files and shells each treat specially; folders are never
# also file names, so any two drawn paths can exist together.
FOLDERS = ["", "sub/", "Sub/", "deep/er/", "spa ce/", "ünï/", "data/", "-d/", "{b}/", "[c]/"]
NAMES = [
    "a.jpg",
    "A.jpg",
    "photo.jpg",
    "Photo.JPG",
    "b c.jpg",
    "ünïcødé é.jpg",
    "-dash.jpg",
    "#hash.txt",
    ";semi.txt",
    "{brace}.jpg",
    "{x,y}.jpg",
    "[x].txt",
    "star*.jpg",
    "q?.tmp",
    "comma,.jpg",
    "back\\slash.jpg",
    " lead.txt",
    "trail.jpg ",
    "x.tmp",
    "noext",
]
CREATED_NAMES = ["fresh.jpg", "sub/fresh new.jpg"]

# Flags for rclone.extra_args (every call) or a job's extra_args (the transfer). The
# harmless ones come first: Hypothesis shrinks toward the start of the list.
HARMLESS_ARGS = {
    "transfers": ["--transfers", "2"],
    "checkers": ["--checkers", "4"],
    "fast-list": ["--fast-list"],
    "checksum": ["--checksum"],
}
RISKY_ARGS = {
    "include-jpg": ["--include", "*.jpg"],
    "filter-jpg": ["--filter", "+ *.jpg"],
    "size-only": ["--size-only"],
    "ignore-case": ["--ignore-case"],
    "min-age-0": ["--min-age", "0s"],
    "exclude-tmp": ["--exclude", "*.tmp"],
}
ARGS = {**HARMLESS_ARGS, **RISKY_ARGS}
HARMLESS_ENV = {"RCLONE_TRANSFERS": "2", "RCLONE_CHECKERS": "4"}
RISKY_ENV = {
    "RCLONE_INCLUDE": "*.jpg",
    "RCLONE_FILTER": "+ *.jpg",
    "RCLONE_SIZE_ONLY": "true",
    "RCLONE_IGNORE_CASE": "true",
    "RCLONE_MIN_AGE": "0s",
    "RCLONE_DRY_RUN": "true",
}
ENV = {**HARMLESS_ENV, **RISKY_ENV}
FILTERS: dict[str, list[str]] = {
    "none": [],
    "no-tmp": ["- *.tmp"],
    "only-jpg": ["+ *.jpg", "- *"],
    "no-deep": ["- /deep/**"],
}

# Destinations that are other storage; only the first two are plain enough that a run to
# them must delete (the others are spellings a stricter engine may fairly refuse).
SEPARATE = ["separate", "separate-slash", "separate-relative", "separate-local", "separate-link"]
MUST_DELETE = {"separate", "separate-slash"}
# The source under another name, a folder inside it, and a folder holding it.
OVERLAPPING = [
    "same-dot",
    "same-double-slash",
    "same-dotdot",
    "same-trailing-dot",
    "same-relative",
    "same-link",
    "same-local",
    "inside",
    "contains",
]


def spell(key: str, root: Path) -> str:
    """The destination as the user would write it; ``root`` holds data/ and backup/."""
    return {
        "separate": f"{root}/backup",
        "separate-slash": f"{root}/backup/",
        "separate-relative": os.path.relpath(root / "backup"),
        "separate-local": f":local:{root}/backup",
        "separate-link": f"{root}/to-backup",
        "same-dot": f"{root}/./data",
        "same-double-slash": f"{root}//data",
        "same-dotdot": f"{root}/data/../data",
        "same-trailing-dot": f"{root}/data/.",
        "same-relative": os.path.relpath(root / "data"),
        "same-link": f"{root}/to-data",
        "same-local": f":local:{root}/data",
        "inside": f"{root}/data/backup",
        "contains": f"{root}",
    }[key]


def real_folder(spelled: str) -> Path:
    """Where a local rclone path really points: prefix dropped, symlinks and dots resolved."""
    return Path(os.path.realpath(spelled.removeprefix(":local:")))


@dataclass(frozen=True)
class Fault:
    point: str  # before-check, after-check, before-delete or after-hash (see faults.py)
    kind: str
    target: str  # a source path (the root_ kinds strike the destination folder itself)


@dataclass(frozen=True)
class Example:
    files: dict[str, tuple[int, int]]  # path -> (size, seed of its bytes)
    old: frozenset[str]  # files backdated to 2020
    destination: str
    global_args: tuple[str, ...]
    job_args: tuple[str, ...]
    env: tuple[str, ...]
    verify: str
    min_age: str
    filters: str
    faults: tuple[Fault, ...]
    preseed: str | None  # a destination copy written before the run: same size and time

    def contents(self) -> dict[str, bytes]:
        return {p: random.Random(s).randbytes(n) for p, (n, s) in self.files.items()}

    def must_delete(self) -> bool:
        """A plain run to other storage, no faults, harmless flags, no RCLONE_* variables:
        it must delete what it verified."""
        return (
            self.destination in MUST_DELETE
            and not self.faults
            and self.preseed is None
            and all(k in HARMLESS_ARGS for k in (*self.global_args, *self.job_args))
            # Even harmless RCLONE_* variables are left out: refusing to run beside any of
            # them would be a fair choice.
            and not self.env
        )

    def selected(self, path: str) -> bool:
        """Whether the job's filter rules let ``path`` through (a glob without / matches
        the last part of the path)."""
        name = PurePosixPath(path).name
        if self.filters == "no-tmp":
            return not name.endswith(".tmp")
        if self.filters == "only-jpg":
            return name.endswith(".jpg")
        if self.filters == "no-deep":
            return not path.startswith("deep/")
        return True


# after-hash: right after the source was hashed beside the transfer (verify: checksum).
SOURCE_POINTS = ["before-check", "after-check", "before-delete", "after-hash"]
DESTINATION_KINDS = ["remove", "corrupt", "unreadable", "root_gone", "root_unreadable"]


def case_twin(path: str) -> str:
    """``path`` with the first letter of its name in the other case (a.jpg, A.jpg)."""
    folder, slash, name = path.rpartition("/")
    for i, char in enumerate(name):
        if char.swapcase() != char:
            return f"{folder}{slash}{name[:i]}{char.swapcase()}{name[i + 1 :]}"
    return path


def data_twin(path: str) -> str:
    """``path`` under a folder named like the source (x.jpg, data/x.jpg)."""
    return f"data/{path}"


@st.composite
def trees(draw: st.DrawFn) -> list[str]:
    """1-8 paths; a few come with a twin that only a careless tool would confuse with them."""
    paths = st.builds(str.__add__, st.sampled_from(FOLDERS), st.sampled_from(NAMES))
    names = draw(st.lists(paths, min_size=1, max_size=6, unique=True))
    for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        twin = draw(st.sampled_from([case_twin, data_twin]))(name)
        if twin not in names:
            names.append(twin)
    return names


@st.composite
def examples(draw: st.DrawFn) -> Example:
    names = draw(trees())
    files = {n: (draw(st.integers(0, 4096)), draw(st.integers(0, 2**16))) for n in names}
    # Other storage three times in four: a careful engine refuses every overlapping
    # spelling at once, so those need fewer examples to be tried.
    overlapping = draw(st.integers(0, 3)) == 3
    destination = draw(st.sampled_from(OVERLAPPING if overlapping else SEPARATE))
    separate = destination in SEPARATE
    verify = draw(st.sampled_from(["checksum", "size", "download"]))
    # Faults on the destination are drawn only when it is other storage (otherwise they
    # would strike the source). Same-size corruption is not drawn with verify: size,
    # which is documented to be blind to it.
    kinds = [k for k in DESTINATION_KINDS if k != "corrupt" or verify != "size"]
    source_fault = st.builds(
        Fault, st.sampled_from(SOURCE_POINTS), st.just("append"), st.sampled_from(names)
    ) | st.builds(
        Fault,
        st.sampled_from(SOURCE_POINTS[:2]),
        st.just("create"),
        st.sampled_from(CREATED_NAMES),
    )
    destination_fault = st.builds(
        Fault, st.just("before-check"), st.sampled_from(kinds), st.sampled_from(names)
    )
    fault = (source_fault | destination_fault) if separate else source_fault
    preseed = None
    if separate and verify != "size":
        preseed = draw(st.none() | st.sampled_from(names))
    return Example(
        files=files,
        # Old unless drawn young: with min_age 1d a young file is kept anyway.
        old=frozenset(names) - draw(st.sets(st.sampled_from(names))),
        destination=destination,
        global_args=tuple(draw(st.lists(st.sampled_from(list(ARGS)), max_size=2, unique=True))),
        job_args=tuple(draw(st.lists(st.sampled_from(list(ARGS)), max_size=1))),
        env=tuple(draw(st.lists(st.sampled_from(list(ENV)), max_size=2, unique=True))),
        verify=verify,
        min_age=draw(st.sampled_from(["0s", "1d"])),
        filters=draw(st.sampled_from(list(FILTERS))),
        faults=tuple(draw(st.lists(fault, max_size=2))),
        preseed=preseed,
    )
