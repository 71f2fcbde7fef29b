"""publish/snapshots settings per camera: defaults, and each mistake named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError
from tests.helpers import REPO

CONFIG = """\
model:
  path: {model}
cameras:
  - id: gate
    type: usb
{extra}
"""


def write(tmp_path: Path, samples: Path, extra: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG.format(model=samples / "models" / "yolox_nano.onnx", extra=extra))
    return path


def test_defaults_keep_the_old_behaviour(tmp_path: Path, samples: Path) -> None:
    camera = load_config(write(tmp_path, samples, "")).cameras[0]
    assert camera.publish.detections == "every_frame"
    assert camera.snapshots.enabled is False
    assert (camera.snapshots.mode, camera.snapshots.max_width, camera.snapshots.quality,
            camera.snapshots.keep) == ("frame", 1280, 80, 500)


def test_settings_are_read(tmp_path: Path, samples: Path) -> None:
    extra = ("    publish: {detections: on_change, keepalive_s: 2}\n"
             "    snapshots: {enabled: true, mode: both, max_width: 640, quality: 60, keep: 3}")
    camera = load_config(write(tmp_path, samples, extra)).cameras[0]
    assert camera.publish.keepalive_s == 2
    assert (camera.snapshots.mode, camera.snapshots.keep) == ("both", 3)


MISTAKES = [
    ("    publish: {detections: sometimes}", 6, "cameras[0].publish.detections",
     "every_frame"),
    ("    publish:\n      keepalive_s: 0", 7, "cameras[0].publish.keepalive_s", "0.5"),
    ("    snapshots:\n      mode: thumbnail", 7, "cameras[0].snapshots.mode", "crop"),
    ("    snapshots:\n      enabled: true\n      quality: 101", 8,
     "cameras[0].snapshots.quality", "100"),
    ("    snapshots:\n      keep: 0", 7, "cameras[0].snapshots.keep", "1"),
    ("    snapshots:\n      max_width: 10", 7, "cameras[0].snapshots.max_width", "64"),
    ("    snapshots:\n      enable: true", 7, "cameras[0].snapshots.enable", "enabled"),
]


@pytest.mark.parametrize(("extra", "line", "field", "hint"), MISTAKES)
def test_mistakes_name_file_line_and_field(
    tmp_path: Path, samples: Path, extra: str, line: int, field: str, hint: str
) -> None:
    path = write(tmp_path, samples, extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: {field}"), problems[0]
    assert hint in problems[0], problems[0]


def test_the_events_demo_config_is_valid() -> None:
    config = load_config(REPO / "configs" / "events-demo.yaml")
    street = config.cameras[0]
    assert street.lines
    assert street.zones
    assert street.snapshots.enabled


def test_agent_yaml_events_examples_work_uncommented(tmp_path: Path) -> None:
    """The commented events block of configs/agent.yaml, uncommented, loads as it says."""
    lines = (REPO / "configs" / "agent.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    # zones:"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("    #"))
    uncommented = [line.replace("    # ", "    ", 1) for line in lines[start:end]]
    lines[start:end] = uncommented
    text = "\n".join(lines).replace("enabled: false       # true", "enabled: true        # true")
    path = tmp_path / "agent.yaml"
    path.write_text(text.replace("../samples", str(REPO / "samples")))
    camera = next(c for c in load_config(path).cameras if c.id == "dock-door")
    assert [z.name for z in camera.zones] == ["loading-bay"]
    assert camera.lines[0].directions.forward == "in"
    assert camera.publish.detections == "on_change"
    assert camera.snapshots.keep == 500
