"""Zones, lines and tracker settings: each kind of bad geometry is reported at its YAML line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_agent.config.loader import check_config, load_config
from edge_agent.config.zones import LineConfig, ZoneConfig

BASE = """\
device_id: box-1
model:
  path: models/yolox.onnx
cameras:
  - id: street
    type: file
    path: clip.mp4
"""
ZONE = """\
    zones:
      - name: bay
        points:
          - [0.1, 0.5]
          - [0.6, 0.5]
          - [0.6, 1.0]
          - [0.1, 1.0]
"""
LINE = """\
    lines:
      - name: gate
        points:
          - [0.5, 0.0]
          - [0.5, 1.0]
"""
# Lines of the file: BASE is lines 1-7; zone points are lines 11-14, line points 11-12.


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# (id, file text, line of the problem, fragments of the one message)
BAD_GEOMETRY = [
    ("polygon-two-points", BASE + ZONE.replace("          - [0.6, 1.0]\n", "").replace(
        "          - [0.1, 1.0]\n", ""), 10,
     ["cameras[0].zones[0].points: a polygon needs at least 3 points (got 2)"]),
    ("polygon-self-intersecting", BASE + ZONE.replace("[0.6, 1.0]", "[0.1, 1.1]").replace(
        "[0.1, 1.0]", "[0.6, 1.0]").replace("[0.1, 1.1]", "[0.1, 1.0]"), 10,
     ["cameras[0].zones[0].points: the polygon crosses itself: edge 1-2 meets edge 3-0"]),
    ("polygon-point-outside", BASE + ZONE.replace("[0.6, 1.0]", "[0.6, 1.2]"), 13,
     ["cameras[0].zones[0].points[2]: point 2 [0.6, 1.2] is outside the frame",
      "allowed: 0 to 1 in normalized units"]),
    ("polygon-negative-pixels", BASE + ZONE.replace("[0.1, 0.5]", "[-4, 300]").replace(
        "        points:", "        units: pixels\n        points:"), 12,
     ["cameras[0].zones[0].points[0]: point 0 [-4, 300] is negative"]),
    ("polygon-repeated-corner", BASE + ZONE.replace("[0.6, 0.5]", "[0.1, 0.5]"), 11,
     ["cameras[0].zones[0].points[0]: points 0 and 1 are the same"]),
    ("polygon-no-area", BASE + ZONE.replace("[0.6, 1.0]", "[0.7, 0.5]").replace(
        "[0.1, 1.0]", "[0.9, 0.5]"), 10,
     ["cameras[0].zones[0].points: the points lie on one line"]),
    ("polygon-boolean-corner", BASE + ZONE.replace("[0.1, 0.5]", "[true, 0.5]"), 11,
     ["cameras[0].zones[0].points[0][0]: should be a number (got true)"]),
    ("line-zero-length", BASE + LINE.replace("[0.5, 1.0]", "[0.5, 0.0]"), 12,
     ["cameras[0].lines[0].points[1]: the line has zero length"]),
    ("line-three-points", BASE + LINE + "          - [0.9, 0.9]\n", 10,
     ["cameras[0].lines[0].points: a line needs exactly 2 points (got 3)"]),
    ("line-point-outside", BASE + LINE.replace("[0.5, 0.0]", "[1.5, 0.0]"), 11,
     ["cameras[0].lines[0].points[0]: point 0 [1.5, 0] is outside the frame"]),
    ("duplicate-zone-and-line", BASE + ZONE + LINE.replace("gate", "bay"), 16,
     ["cameras[0].lines[0].name: name 'bay' is already used by zones[0]"]),
    ("duplicate-zone-names", BASE + ZONE + ZONE.replace("    zones:\n", ""), 15,
     ["cameras[0].zones[1].name: name 'bay' is already used by zones[0]"]),
    ("same-direction-names", BASE + LINE + "        directions: {forward: in, backward: in}\n",
     13, ["cameras[0].lines[0].directions.backward: forward and backward have the same name"]),
    ("bad-anchor", BASE + ZONE + "        anchor: feet\n", 15,
     ["cameras[0].zones[0].anchor: not an allowed value (got 'feet'); allowed: bottom_center, "
      "center, top_center"]),
    ("zone-name-with-slash", BASE + ZONE.replace("name: bay", "name: bay/1"), 9,
     ["cameras[0].zones[0].name: is not a valid id"]),
    ("tracker-typo", BASE + "    tracker: {max_missed: 3}\n", 8,
     ["cameras[0].tracker.max_missed: unknown key (did you mean 'max_missed_frames'?)"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), [c[1:] for c in BAD_GEOMETRY],
                         ids=[c[0] for c in BAD_GEOMETRY])
def test_bad_geometry_is_reported_at_its_line(
    tmp_path: Path, text: str, line: int, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    ok, report = check_config(path)
    assert not ok
    problems = report.splitlines()[:-1]
    assert len(problems) == 1, report
    assert problems[0].startswith(f"{path}:{line}: "), report
    for fragment in fragments:
        assert fragment in problems[0], report
    for jargon in ("pydantic", "Value error", "[type=", "Input should"):
        assert jargon not in problems[0], report


def test_good_shapes_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + ZONE + LINE))
    camera = config.cameras[0]
    (zone,), (line,) = camera.zones, camera.lines
    assert (zone.anchor, zone.min_frames, zone.dwell_s, zone.classes) == (
        "bottom_center", 3, None, None)
    assert (line.directions.forward, line.directions.backward, line.min_frames) == (
        "forward", "backward", 2)
    assert camera.tracker.max_missed_frames >= 2  # ids must survive a two-frame gap


def test_cameras_without_shapes_still_load(tmp_path: Path) -> None:
    camera = load_config(write(tmp_path, BASE)).cameras[0]
    assert (camera.zones, camera.lines) == ([], [])


def test_pixel_shapes_may_exceed_one(tmp_path: Path) -> None:
    zone = ZoneConfig(name="z", units="pixels", points=[(10, 10), (700, 10), (700, 500)])
    line = LineConfig(name="l", units="pixels", points=[(0, 288), (768, 288)])
    assert (zone.points[1], line.points[1]) == ((700, 10), (768, 288))


def test_check_config_command_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + LINE.replace("[0.5, 1.0]", "[0.5, 0.0]"))
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert f"{path}:12: cameras[0].lines[0].points[1]: the line has zero length" in (
        result.stdout + result.stderr)


def test_commented_example_in_the_reference_config_is_valid(tmp_path: Path) -> None:
    """configs/agent.yaml shows zones, lines and tracker commented out: uncommented, they
    must load (a technician copies them)."""
    text = (Path(__file__).resolve().parents[3] / "configs" / "agent.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("    # zones:")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("    # tracker:"))
    example = "\n".join("    " + line[6:] for line in lines[start:end + 1])
    camera = load_config(write(tmp_path, BASE + example + "\n")).cameras[0]
    assert [z.name for z in camera.zones] == ["loading-bay"]
    assert camera.lines[0].directions.forward == "in"
    assert camera.tracker.max_missed_frames == 10
