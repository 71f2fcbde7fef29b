"""`edge-agent bench --events-cost`: the real command on the sample model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.tools.bench_events import format_figures
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


def test_the_report_names_each_size_and_the_share_of_inference() -> None:
    figures = {"inference_cpu_ms": 1000.0, "ms_per_frame": {"1": 1.0, "20": 50.0, "100": 300.0}}
    lines = format_figures(figures).splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["1", "20", "100"]
    assert "5.0% of one inference  (target < 10 %)" in lines[2]
    assert lines[-1].startswith("    inference 1000.00 CPU ms")
    over = format_figures({**figures, "inference_cpu_ms": 100.0}).splitlines()[2]
    assert over.endswith("OVER the 10 % target")
