"""run-job from a cached config refuses what a freshly validated one refuses, and says the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.cli_helpers import cli_argv, cli_env, make_tree, tree, write_config


def run(config: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "MQTT_BACKUP_CACHE_DIR": str(cache)}
    return subprocess.run(
        cli_argv(config, *args), capture_output=True, text=True, timeout=60, env=env
    )


def test_a_destination_moved_into_the_source_after_caching_is_refused(
    tmp_path: Path, rclone_binary: str
) -> None:
    make_tree(tmp_path / "src", {"a.txt": b"alpha\n"})
    config = write_config(
        tmp_path / "mqtt-backup.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "rclone": {"binary": rclone_binary},
            "jobs": {
                "docs": {"source": str(tmp_path / "src"), "destination": str(tmp_path / "dst")}
            },
        },
    )
    cache = tmp_path / "cache"
    for _ in range(2):
        done = run(config, cache, "run-job", "docs")
        assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "dst") == {"a.txt": b"alpha\n"}
    assert len(list(cache.iterdir())) == 1
    # The destination becomes a link into the source: the same file, new meaning.
    (tmp_path / "dst").rename(tmp_path / "old-dst")
    (tmp_path / "src" / "nested").mkdir()
    (tmp_path / "dst").symlink_to(tmp_path / "src" / "nested")
    refused = run(config, cache, "run-job", "docs")
    validated = run(config, cache, "validate")
    assert refused.returncode == validated.returncode == 2
    assert "the destination" in refused.stderr and "is inside the source" in refused.stderr
    assert refused.stderr == validated.stderr
    assert list((tmp_path / "src" / "nested").iterdir()) == []
