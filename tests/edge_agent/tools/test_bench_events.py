"""`edge-agent bench --events-cost`: the real command on the sample model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, snapshot_config


@pytest.mark.slow
def test_events_cost_prints_ms_and_share_at_1_20_100_objects(
    tmp_path: Path, samples: Path
) -> None:
    video = samples / "media" / "vtest.mp4"
    config = snapshot_config(tmp_path, samples, f"  - id: v\n    type: file\n    path: {video}\n")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "bench", "--config", str(config),
         "--events-cost", "--seconds", "0.5"],
        capture_output=True, text=True, timeout=180, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\s+(\d+) objects\s+([\d.]+) ms\s+([\d.]+)% of one inference",
                      done.stdout, re.MULTILINE)
    assert [int(objects) for objects, _, _ in rows] == [1, 20, 100], done.stdout
    ms = [float(value) for _, value, _ in rows]
    assert 0 < ms[0] < ms[1] < ms[2]  # more objects cost more
    assert re.search(r"inference [\d.]+ CPU ms a frame", done.stdout), done.stdout
