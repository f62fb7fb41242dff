"""The run-time proof of separate storage, against spellings no config check can see through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.rclone_servers import serve_webdav, tree, write_tree
from tests.integration.test_engine_transfer import run_job

OLD = 1_600_000_000
FILES = {"a.txt": b"alpha", "sub/b.txt": b"beta"}


def vtd(source: str, destination: str, **deletion: Any) -> dict[str, Any]:
    return {
        "source": source,
        "destination": destination,
        "deletion": {"mode": "verify_then_delete", **deletion},
    }


def no_probes_left(*roots: Path) -> bool:
    return not any(".mqtt-backup-probe-" in name for root in roots for name in tree(root))


@pytest.mark.parametrize("kind", ["alias", "union"])
def test_a_remote_that_is_the_source_is_refused(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    src, other = tmp_path / "src", tmp_path / "other"
    write_tree(src, FILES, mtime=OLD)
    other.mkdir()
    # Remotes defined in the environment, as rclone allows: invisible to any config check.
    monkeypatch.setenv("RCLONE_CONFIG_TWIN_TYPE", kind)
    if kind == "alias":
        monkeypatch.setenv("RCLONE_CONFIG_TWIN_REMOTE", str(src))
    else:
        # New files go to the other folder; reads see the source's own files.
        monkeypatch.setenv("RCLONE_CONFIG_TWIN_UPSTREAMS", f"{src}:ro {other}")
    outcome, events = run_job(make_config, tmp_path, vtd(str(src), "twin:"))
    assert outcome.status == "failed"
    assert outcome.error is not None and "same storage" in outcome.error
    assert str(src) in outcome.error and "twin:" in outcome.error
    assert not outcome.retryable
    assert tree(src) == FILES
    assert outcome.deletion.files_deleted == 0
    assert no_probes_left(src, other)


def test_a_network_server_serving_the_source_is_refused(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src = tmp_path / "src"
    write_tree(src, FILES, mtime=OLD)
    with serve_webdav(rclone_binary, src) as server:
        job = vtd(str(src), server.remote(""), verify="download")
        outcome, _ = run_job(make_config, tmp_path, job)
    assert outcome.status == "failed"
    assert outcome.error is not None and "same storage" in outcome.error
    assert tree(src) == FILES
    assert no_probes_left(src)


def test_a_separate_remote_passes_the_proof_and_leaves_no_probe(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES, mtime=OLD)
    monkeypatch.setenv("RCLONE_CONFIG_NAS_TYPE", "alias")
    monkeypatch.setenv("RCLONE_CONFIG_NAS_REMOTE", str(dst))
    outcome, _ = run_job(make_config, tmp_path, vtd(str(src), "nas:photos"))
    assert outcome.status == "completed", outcome.error
    assert tree(dst / "photos") == FILES
    assert tree(src) == {}
    assert no_probes_left(src, dst)


def test_a_destination_that_cannot_take_a_probe_deletes_nothing(
    make_config: Any, tmp_path: Path, rclone_binary: str
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES, mtime=OLD)
    binary = tmp_path / "rclone-no-touch"
    binary.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = touch ]; then echo \'{"level":"error","msg":"permission denied"}\' >&2; '
        "exit 1; fi\n"
        f'exec "{rclone_binary}" "$@"\n',
        encoding="utf-8",
    )
    binary.chmod(0o755)
    outcome, _ = run_job(
        make_config, tmp_path, vtd(str(src), str(dst)), rclone={"binary": str(binary)}
    )
    assert outcome.status == "failed"
    assert outcome.error is not None and "probe" in outcome.error
    assert "permission denied" in outcome.error
    assert tree(src) == FILES
    assert tree(dst) == FILES


def test_a_dry_run_writes_no_probe(make_config: Any, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILES, mtime=OLD)
    write_tree(dst, FILES, mtime=OLD)
    outcome, _ = run_job(make_config, tmp_path, vtd(str(src), str(dst)), dry_run=True)
    assert outcome.status == "completed", outcome.error
    assert tree(src) == FILES
    assert outcome.kept_reasons == {"dry_run": len(FILES)}
    assert no_probes_left(src, dst)
