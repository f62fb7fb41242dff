"""Where an rclone path points, and whether two of them overlap on this machine's disks.

rclone reads ``/srv/photos``, ``photos``, ``./photos`` and ``:local:/srv/photos`` (with or
without backend parameters) as local folders. For those the overlap is decided from what
is on disk, not from how the path is spelled: ``realpath`` folds ``.``, ``..``, doubled
slashes and symlinks, and device plus inode numbers catch bind mounts and case-insensitive
file systems that spell one folder two ways. Remotes cannot be judged here; the engine
proves them apart at run time with probe files (engine/probes.py).
"""

from __future__ import annotations

import os

from mqtt_backup.redaction.connection_string import RemoteSyntaxError, parse
from mqtt_backup.redaction.secrets import masked_remote


def local_path(spec: str) -> str | None:
    """The local path an rclone path names, or None when it names a remote."""
    try:
        remote = parse(spec)
    except RemoteSyntaxError:
        return None  # rclone refuses it: it names no folder
    if not remote.name:
        return spec
    if remote.name == ":local":
        return remote.path or "."
    return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _lineage(path: str) -> list[tuple[int, int]]:
    """Device and inode of ``path`` (when it exists) and of each existing folder above it."""
    found = []
    current = path
    while True:
        identity = _identity(current)
        if identity is not None:
            found.append(identity)
        parent = os.path.dirname(current)
        if parent == current:
            return found
        current = parent


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def overlap(source: str, destination: str) -> str | None:
    """Why two rclone paths share storage on this machine, or None when they do not.

    Reads the file system (symlinks, device and inode numbers); neither path needs to exist.
    """
    src, dst = local_path(source), local_path(destination)
    if src is None or dst is None:
        return None
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    src_id, dst_id = _identity(real_src), _identity(real_dst)
    if real_src == real_dst or (src_id is not None and src_id == dst_id):
        return f"source and destination are the same folder ({real_src})"
    if _within(real_dst, real_src) or (src_id is not None and src_id in _lineage(real_dst)):
        return f"the destination {real_dst} is inside the source {real_src}"
    if _within(real_src, real_dst) or (dst_id is not None and dst_id in _lineage(real_src)):
        return f"the source {real_src} is inside the destination {real_dst}"
    return None


def describe(spec: str) -> str:
    """An rclone path safe to show: an inline remote's parameters (secrets) left out."""
    try:
        remote = parse(spec)
    except RemoteSyntaxError:
        return masked_remote(spec)
    return f"{remote.name}:{remote.path}" if remote.name else spec
