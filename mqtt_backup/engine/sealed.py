"""Pure: what of the user's rclone flags and environment may reach verification and deletion.

The listings, the source's hashsum, the checksum and the check, the repair and the delete
decide which files are proven and which are deleted. A filter flag there widens the
delete (rclone matches ``--include`` and ``--filter`` rules before those of
``--filter-from``); a comparison flag such as ``--size-only`` weakens the proof. So these
calls are sealed: they get exactly the flags verify-then-delete chooses, the job's own
``filters`` and the rclone config file, plus what this allow-list names — settings that
say how to reach and talk to a remote, never which files or how they compare. Anything
else is dropped from these calls (the transfer still gets it). It is an allow-list on
purpose: a flag rclone adds tomorrow is dropped until it is known to be harmless. See
docs/design.md, "Deletion safety".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Global flags that only say how to connect or how hard to work, with whether they take a value.
CONNECTION_FLAGS: dict[str, bool] = {
    "--ask-password": False,
    "--password-command": True,
    "--ca-cert": True,
    "--client-cert": True,
    "--client-key": True,
    "--no-check-certificate": False,
    "--contimeout": True,
    "--timeout": True,
    "--low-level-retries": True,
    "--tpslimit": True,
    "--tpslimit-burst": True,
    "--bwlimit": True,
    "--bind": True,
    "--user-agent": True,
    "--header": True,
    "--disable-http2": False,
    "--disable-http-keep-alives": False,
    "--checkers": True,
    "--transfers": True,
    "--buffer-size": True,
    "--use-mmap": False,
    "--fast-list": False,
    "--cache-dir": True,
    "--temp-dir": True,
    "--multi-thread-streams": True,
    "--multi-thread-cutoff": True,
}

# rclone's backends (``rclone config providers``, 1.75): ``--<prefix>-<option>`` flags and
# ``RCLONE_<PREFIX>_<OPTION>`` variables configure one backend, and are connection settings.
BACKEND_PREFIXES = frozenset(
    {
        "alias",
        "archive",
        "azureblob",
        "azurefiles",
        "b2",
        "box",
        "cache",
        "chunker",
        "cloudinary",
        "combine",
        "compress",
        "crypt",
        "doi",
        "drime",
        "drive",
        "dropbox",
        "fichier",
        "filefabric",
        "filelu",
        "filen",
        "filescom",
        "ftp",
        "gcs",
        "gofile",
        "gphotos",
        "hasher",
        "hdfs",
        "hidrive",
        "http",
        "huaweidrive",
        "iclouddrive",
        "imagekit",
        "internetarchive",
        "internxt",
        "jottacloud",
        "koofr",
        "linkbox",
        "local",
        "mailru",
        "mega",
        "memory",
        "netstorage",
        "onedrive",
        "oos",
        "opendrive",
        "pcloud",
        "pikpak",
        "pixeldrain",
        "premiumizeme",
        "protondrive",
        "putio",
        "qingstor",
        "quatrix",
        "s3",
        "seafile",
        "sftp",
        "shade",
        "sharefile",
        "sia",
        "smb",
        "storj",
        "sugarsync",
        "swift",
        "tardigrade",
        "ulozto",
        "union",
        "webdav",
        "yandex",
        "zoho",
    }
)

# Variables that say where the config is and how to unlock it, and remotes defined in the
# environment (RCLONE_CONFIG_<REMOTE>_<KEY>).
_ENV_KEEP_PREFIXES = ("RCLONE_CONFIG",)
_ENV_KEEP = frozenset(
    {"RCLONE_PASSWORD_COMMAND"}
    | {"RCLONE_" + flag[2:].upper().replace("-", "_") for flag in CONNECTION_FLAGS}
)


@dataclass(frozen=True, slots=True)
class Sealed:
    """The flags and environment for a sealed call, and what was left out of them."""

    flags: list[str]
    env: dict[str, str]
    dropped: list[str]


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def _allowed_flag(name: str) -> bool:
    if name in CONNECTION_FLAGS:
        return True
    if not name.startswith("--"):
        return False
    prefix = name[2:].split("-", 1)[0]
    return prefix in BACKEND_PREFIXES and "-" in name[2:]


def _takes_value(name: str, arg: str, following: str | None) -> bool:
    """Whether ``following`` is the value of flag ``arg`` (not another flag)."""
    if "=" in arg or following is None:
        return False
    if name in CONNECTION_FLAGS:
        return CONNECTION_FLAGS[name]
    # Unknown arity: extra_args hold flags only, so a word that is not a flag is a value.
    return not following.startswith("-")


def seal_flags(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """``args`` split into the allow-listed flags (with their values) and the dropped ones."""
    items = list(args)
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(items):
        arg = items[i]
        name = _flag_name(arg)
        following = items[i + 1] if i + 1 < len(items) else None
        width = 2 if _takes_value(name, arg, following) else 1
        if _allowed_flag(name):
            kept += items[i : i + width]
        else:
            dropped.append(name)
        i += width
    return kept, dropped


def _allowed_env(key: str) -> bool:
    if not key.startswith("RCLONE_"):
        return True
    if key in _ENV_KEEP or key.startswith(_ENV_KEEP_PREFIXES):
        return True
    prefix = key[len("RCLONE_") :].split("_", 1)[0].lower()
    return prefix in BACKEND_PREFIXES and key.count("_") >= 2


def seal_env(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment without the ``RCLONE_*`` variables that could change scope or proof."""
    kept = {k: v for k, v in environ.items() if _allowed_env(k)}
    return kept, sorted(k for k in environ if k not in kept)


def seal(extra_args: Iterable[str], environ: Mapping[str, str]) -> Sealed:
    """The global ``rclone.extra_args`` and environment as a sealed call may have them."""
    flags, dropped_flags = seal_flags(extra_args)
    env, dropped_env = seal_env(environ)
    return Sealed(flags, env, dropped_flags + dropped_env)
