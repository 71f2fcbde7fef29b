"""`detect:` and `masks:` per camera: each kind of bad value is reported at its YAML line,
with the key path and what is allowed; good values load into the typed sections."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_agent.config.detect import DetectConfig
from edge_agent.config.loader import check_config, load_config

BASE = """\
device_id: box-1
model:
  path: models/yolox.onnx
cameras:
  - id: street
    type: file
    path: clip.mp4
"""
# BASE is lines 1-7; what a case appends starts on line 8.


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(text), "    "))
    return path


# (id, camera keys appended to BASE, line of the problem, fragments of the one message)
BAD = [
    ("fps-zero", "detect: {fps: 0}", 8,
     ["cameras[0].detect.fps", "allowed: more than 0"]),
    ("score-above-one", "detect:\n  min_score:\n    person: 1.5\n", 10,
     ["cameras[0].detect.min_score.person", "at most 1"]),
    ("negative-area", "detect:\n  min_area: {car: -3}\n", 9,
     ["cameras[0].detect.min_area.car", "at least 0"]),
    ("blank-class", "detect:\n  min_score:\n    ' ': 0.5\n", 10,
     ["cameras[0].detect.min_score. ", "is not a class"]),
    ("numeric-key-unquoted", "detect:\n  min_score:\n    2: 0.5\n", 10,
     ["cameras[0].detect.min_score.2", "a key must be text"]),
    ("unknown-motion-key", "detect:\n  motion: {enabled: true, treshold: 0.1}\n", 9,
     ["cameras[0].detect.motion.treshold"]),
    ("motion-size", "detect:\n  motion:\n    size: [64, 2]\n", 10,
     ["cameras[0].detect.motion.size[1]", "width and height 4 to 1024"]),
    ("keepalive-above-fps", "detect:\n  fps: 1\n  motion:\n    enabled: true\n"
     "    keepalive_fps: 2\n", 12,
     ["cameras[0].detect.motion.keepalive_fps", "at most detect.fps"]),
    ("mask-two-points", "masks:\n  - name: tv\n    points: [[0, 0], [1, 1]]\n", 10,
     ["cameras[0].masks[0].points", "at least 3 points"]),
    ("mask-self-intersecting", "masks:\n  - name: tv\n    points:\n      - [0, 0]\n"
     "      - [1, 1]\n      - [1, 0]\n      - [0, 1]\n", 10,
     ["cameras[0].masks[0].points", "crosses itself"]),
    ("mask-outside", "masks:\n  - name: tv\n    points:\n      - [0, 0]\n      - [1.2, 0]\n"
     "      - [1, 1]\n", 12,
     ["cameras[0].masks[0].points[1]", "outside the frame", "units: pixels"]),
    ("mask-negative-pixels", "masks:\n  - name: tv\n    units: pixels\n    points:\n"
     "      - [0, 0]\n      - [640, -1]\n      - [640, 480]\n", 13,
     ["cameras[0].masks[0].points[1]", "negative"]),
    ("mask-duplicate-name", "masks:\n  - {name: tv, points: [[0, 0], [1, 0], [1, 1]]}\n"
     "  - {name: tv, points: [[0, 0], [0, 1], [1, 1]]}\n", 10,
     ["cameras[0].masks[1].name", "already used by masks[0]"]),
    ("mask-bad-name", "masks:\n  - {name: 'a b', points: [[0, 0], [1, 0], [1, 1]]}\n", 9,
     ["cameras[0].masks[0].name"]),
    ("mask-negative-class", "masks:\n  - name: tv\n    points: [[0, 0], [1, 0], [1, 1]]\n"
     "    classes: [person, -1]\n", 11,
     ["cameras[0].masks[0].classes[1]", "is not a class"]),
    ("mask-units", "masks:\n  - {name: tv, units: percent, points: [[0, 0], [1, 0], [1, 1]]}\n",
     9, ["cameras[0].masks[0].units", "normalized", "pixels"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_each_bad_value_is_reported_at_its_line(
    tmp_path: Path, text: str, line: int, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    result = check_config(path)
    assert not result.ok
    problems = [row for row in result.text.splitlines() if row.startswith(f"{path}:")][:-1]
    assert problems, result.text  # the last line is the count
    assert all(row.startswith(f"{path}:{line}: ") for row in problems), result.text
    for fragment in fragments:
        assert fragment in problems[0], result.text


def test_good_settings_load_and_defaults_are_off(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        detect:
          fps: 5
          min_score: {person: 0.5, "2": 0.3}
          min_area: {car: 0.002, truck: 900}
          motion: {enabled: true, keepalive_fps: 0.2, size: [96, 54]}
        masks:
          - {name: road, points: [[0, 0], [0.3, 0], [0.3, 0.2]]}
          - name: tv
            units: pixels
            classes: [person, 62]
            points: [[10, 10], [200, 10], [200, 120], [10, 120]]
        """)
    camera = load_config(path).cameras[0]
    assert camera.detect.fps == 5
    assert camera.detect.min_score == {"person": 0.5, "2": 0.3}
    assert camera.detect.min_area == {"car": 0.002, "truck": 900}
    assert camera.detect.motion.enabled
    assert camera.detect.motion.size == (96, 54)
    assert [mask.name for mask in camera.masks] == ["road", "tv"]
    assert camera.masks[1].classes == ["person", 62]
    default = DetectConfig()
    assert default.fps is None
    assert not default.motion.enabled
    assert not default.min_score
    bare = load_config(write(tmp_path, "")).cameras[0]
    assert bare.detect == default
    assert bare.masks == []
