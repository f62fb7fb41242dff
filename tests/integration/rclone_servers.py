"""Real network remotes on loopback: ``rclone serve webdav`` and ``rclone serve sftp``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class WebdavServer:
    root: Path
    port: int

    def remote(self, path: str = "") -> str:
        """An rclone connection string for ``path`` on this server (no hashes on webdav)."""
        return f":webdav,url='http://127.0.0.1:{self.port}':{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"rclone serve exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail("rclone serve did not start listening")


@pytest.fixture
def webdav_server(rclone_binary: str, tmp_path: Path) -> Iterator[WebdavServer]:
    root = tmp_path / "webdav-root"
    root.mkdir()
    with serve_webdav(rclone_binary, root) as server:
        yield server


@contextlib.contextmanager
def serve_webdav(rclone_binary: str, root: Path) -> Iterator[WebdavServer]:
    """``rclone serve webdav`` of ``root`` on a free port, for as long as the block runs."""
    port = free_port()
    proc = subprocess.Popen(
        [rclone_binary, "serve", "webdav", "--addr", f"127.0.0.1:{port}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port, proc)
        yield WebdavServer(root, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SftpServer:
    """``rclone serve sftp`` on a free port, which a test may kill like a NAS going away."""

    USER = "backup"
    PASSWORD = "sftp-test-password"  # noqa: S105 - a throw-away server on loopback

    def __init__(self, rclone: str, root: Path) -> None:
        self.rclone = rclone
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SftpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.rclone, "serve", "sftp", "--addr", f"127.0.0.1:{self.port}",
             "--user", self.USER, "--pass", self.PASSWORD, str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # The first start generates host keys (about a second); it listens only after that.
        wait_until_listening(self.port, self.process, timeout=30)
        return self

    def remote(self, path: str = "") -> str:
        """An rclone connection string for ``path`` on this server."""
        obscured = subprocess.run(
            [self.rclone, "obscure", self.PASSWORD], capture_output=True, text=True, check=True
        ).stdout.strip()
        return (
            f":sftp,host=127.0.0.1,port={self.port},user={self.USER},pass={obscured},"
            f"known_hosts_file=none:{path}"
        )

    def kill(self) -> None:
        """SIGKILL: connections drop and new ones are refused, as when a NAS goes away."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sftp_server(rclone_binary: str, tmp_path: Path) -> Iterator[SftpServer]:
    server = SftpServer(rclone_binary, tmp_path / "sftp-root").start()
    try:
        yield server
    finally:
        server.kill()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its content."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def folders(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def write_tree(root: Path, files: dict[str, bytes], *, mtime: float | None = None) -> None:
    """Create ``files`` under ``root``; an old ``mtime`` keeps min_age checks meaningful."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def rclone_without_repair(tmp_path: Path, real: str) -> str:
    """An rclone whose repair copy (``copy --ignore-times``) does nothing, as a destination
    that keeps corrupting what is written to it would."""
    wrapper = tmp_path / "rclone-no-repair"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" --ignore-times "*) exit 0;; esac\nexec "{real}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return str(wrapper)


# The calls of a verify-then-delete run that compare the two sides: ``rclone checksum`` of
# the destination against the source's hashes, and ``rclone check`` (other verify modes,
# files the sum list cannot carry, and the second look after a repair).
COMPARISONS = ("check", "checksum")


def wrap_rclone(
    tmp_path: Path, real: str, subcommand: str | tuple[str, ...], script: str, *, after: bool
) -> str:
    """An rclone that runs ``script`` (shell) when called for ``subcommand`` (or any of
    several): before or after it."""
    names = (subcommand,) if isinstance(subcommand, str) else subcommand
    wrapper = tmp_path / f"rclone-wrapped-{'-'.join(names)}"
    pattern = "|".join(names)
    if after:
        body = f'case "$1" in {pattern})\n  "{real}" "$@"; rc=$?\n  {script}\n  exit $rc;;\nesac\n'
    else:
        body = f'case "$1" in {pattern})\n  {script};;\nesac\n'
    wrapper.write_text(f'#!/bin/sh\n{body}exec "{real}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return str(wrapper)
