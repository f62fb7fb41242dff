"""A real network remote on loopback (rclone serve webdav): no hashes in common."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.rclone_servers import WebdavServer, tree, webdav_server, write_tree
from tests.integration.test_engine_transfer import run_job

__all__ = ["webdav_server"]

FILES = {"a.txt": b"alpha", "sub/b c.txt": b"beta", "#c.txt": b"gamma"}
OLD = 1_600_000_000


def job(src: Path, server: WebdavServer, **deletion: Any) -> dict[str, Any]:
    return {
        "source": str(src),
        "destination": server.remote("backup"),
        "deletion": deletion or {"mode": "none"},
    }


def test_copy_to_webdav(make_config: Any, tmp_path: Path, webdav_server: WebdavServer) -> None:
    src = tmp_path / "src"
    write_tree(src, FILES)
    outcome, _ = run_job(make_config, tmp_path, job(src, webdav_server))
    assert outcome.status == "completed", outcome.error
    assert tree(webdav_server.root / "backup") == FILES


def test_checksum_without_common_hash_is_refused_and_names_download(
    make_config: Any, tmp_path: Path, webdav_server: WebdavServer
) -> None:
    src = tmp_path / "src"
    write_tree(src, FILES, mtime=OLD)
    outcome, _ = run_job(make_config, tmp_path, job(src, webdav_server, mode="verify_then_delete"))
    assert outcome.status == "failed"
    assert outcome.error is not None and "verify to download" in outcome.error
    assert not outcome.retryable
    assert tree(src) == FILES
    assert tree(webdav_server.root / "backup") == FILES
    assert outcome.deletion.files_deleted == 0


def test_download_verifies_and_deletes(
    make_config: Any, tmp_path: Path, webdav_server: WebdavServer
) -> None:
    src = tmp_path / "src"
    write_tree(src, FILES, mtime=OLD)
    settings = job(src, webdav_server, mode="verify_then_delete", verify="download")
    outcome, _ = run_job(make_config, tmp_path, settings)
    assert outcome.status == "completed", outcome.error
    assert tree(webdav_server.root / "backup") == FILES
    assert tree(src) == {}
    assert outcome.deletion.files_verified == len(FILES)
    assert outcome.deletion.files_deleted == len(FILES)
