"""The benchmark suite runs end to end on tiny sizes (``python -m bench --quick``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="needs mosquitto",
)


@pytest.mark.timeout(300)
def test_quick_run_writes_every_result(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    done = subprocess.run(
        # One round per comparison: this checks that every part runs, not what it measures.
        [sys.executable, "-m", "bench", "--quick", "--pairs", "1", "--output", str(output)]
        + ["--tmp", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["errors"] == {}
    results = report["results"]
    assert set(results) == {"transfer", "serve", "verify", "latency", "scale", "deletion", "flags"}
    assert results["transfer"]["small"]["ratio"]["n"] == 1
    assert results["transfer"]["fixed"]["warm"]["fixed_cost"]["n"] == 1
    # serve's own CPU and its rclone's are read for every run started over MQTT
    assert len(results["serve"]["small"]["serve_cpu"]["runs"]) == 1
    assert all(run["files"] == 300 for run in results["serve"]["small"]["serve_runs"])
    # verify-then-delete ran inside serve and as a run-job, each deleting its whole source
    assert results["verify"]["serve"]["ratio"]["n"] == 1
    assert all(run["files"] == 300 for run in results["verify"]["serve"]["serve_runs"])
    assert results["verify"]["by_hand"]["less_startup"]["n"] == 1
    assert results["latency"]["latency"]["runs"] == 5
    assert (
        results["scale"]["serve"]["fresh_subscriber_retained"] == results["scale"]["serve"]["jobs"]
    )
    assert "median [min-max], CI of the median" in done.stdout  # the table was printed
    # the temporary folder is gone: only the output file is left
    assert [p.name for p in tmp_path.iterdir()] == ["quick.json"]
