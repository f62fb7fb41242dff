"""A real network remote that can be killed mid-transfer: ``rclone serve sftp`` on loopback."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.rclone_servers import free_port

READY = "SFTP server listening"


class SftpServer:
    """``rclone serve sftp`` of ``root`` with a user and password; kill() and start() keep the port.

    The server makes its host keys on its very first start (about a second), so start() waits
    for the line that says it listens rather than for the port alone.
    """

    def __init__(self, rclone: str, root: Path, log_path: Path) -> None:
        self.rclone = rclone
        self.root = root
        self.log_path = log_path
        self.port = free_port()
        self.user = "chaos"
        self.password = secrets.token_hex(12)
        self.obscured = subprocess.run(
            [rclone, "obscure", self.password], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def remote(self, path: str) -> str:
        """An rclone connection string for ``path`` on this server, its password obscured."""
        return f":sftp,host=127.0.0.1,port={self.port},user={self.user},pass={self.obscured}:{path}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            return
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.rclone, "serve", "sftp", "--addr", f"127.0.0.1:{self.port}",
                 "--user", self.user, "--pass", self.password, str(self.root)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in self._log_from(offset):
                return
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                log = self._log_from(offset)
                raise RuntimeError(f"rclone serve sftp exited with {code}: {log}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"rclone serve sftp did not listen within {timeout:.0f}s")

    def hang(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, and then nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the connections of running transfers break without a goodbye."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    def _log_from(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
