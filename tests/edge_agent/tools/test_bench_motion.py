"""The frame gate end to end: a clip with long still stretches (frozen frames of the sample
video, made here with ffmpeg) through the real capture, pipeline and OpenVINO. The motion
gate saves inferences on the still spans and loses no moving frame: every moving frame is
inferred with the same detections as with the gate off. detect.fps and the camera's
rules (min_score, mask) hold on the same clip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cli import build_parser
from edge_agent.config.detect import DetectConfig, MaskConfig, MotionConfig
from edge_agent.config.model import AgentConfig
from edge_agent.tools.bench_motion import (
    GateRun,
    StillClip,
    compare,
    format_figures,
    play,
    still_stretch_clip,
)
from engines.model_info import read_labels
from engines.openvino import OpenVinoEngine

pytestmark = pytest.mark.slow

MOTION = MotionConfig(enabled=True, keepalive_fps=0.5, hold_s=1.0, compare_s=0.5)


@pytest.fixture(scope="module")
def clip(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> StillClip:
    out = tmp_path_factory.mktemp("motion") / "still.mp4"
    return still_stretch_clip(samples / "media" / "vtest.mp4", out, moving_s=3, still_s=5,
                              cycles=2, width=384, fps=10)


@pytest.fixture(scope="module")
def config(samples: Path) -> AgentConfig:
    return AgentConfig(device_id="box", model={"path": samples / "models" / "yolox_nano.onnx",
                                               "labels": samples / "models" / "coco_labels.txt"},
                       cameras=[{"id": "cam", "type": "file", "path": "x.mp4"}])


@pytest.fixture(scope="module")
def engine(samples: Path) -> Iterator[OpenVinoEngine]:
    labels = read_labels(samples / "models" / "coco_labels.txt")
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx", class_names=labels) as real:
        yield real


@pytest.fixture(scope="module")
def runs(config: AgentConfig, engine: OpenVinoEngine, clip: StillClip) -> dict[str, GateRun]:
    return {
        "off": play(config, engine, clip, DetectConfig()),
        "on": play(config, engine, clip, DetectConfig(motion=MOTION)),
        "rules": play(config, engine, clip, DetectConfig(
            fps=5, min_score={"person": 0.5}, min_area={"person": 600})),
    }


def test_the_clip_has_the_known_still_spans(clip: StillClip) -> None:
    assert clip.frames == 160
    assert clip.still.tolist() == ([False] * 30 + [True] * 50) * 2


def test_motion_gate_saves_the_still_spans_and_loses_no_moving_frame(
    runs: dict[str, GateRun], clip: StillClip
) -> None:
    off, on = runs["off"], runs["on"]
    report = compare(off, on, clip)
    assert off.inferred == clip.frames  # gate off: every frame
    assert sorted(off.frames) == list(range(clip.frames))
    # Each still span: 0.5 s until the last move stops differing, 1 s hold, then keep-alive
    # every 2 s over the remaining 3.5 s: about 15 + 2 of 50 frames are inferred.
    inferred_still = [i for i in on.frames if clip.still[i]]
    assert 2 * 13 <= len(inferred_still) <= 2 * 19
    assert on.inferred == len(on.frames) == clip.frames - on.skipped_motion
    assert on.handled == off.handled == clip.frames  # the watchdog sees every frame as progress
    assert report["inferences_saved"] >= 60
    assert report["moving_frames_lost"] == 0
    moving = [i for i in range(clip.frames) if not clip.still[i]]
    assert all(i in on.frames for i in moving)
    for index in moving:  # same frames, same engine: the same detections
        ours, theirs = on.frames[index], off.frames[index]
        assert [d[0] for d in ours] == [d[0] for d in theirs], index
        assert np.allclose([d[2] for d in ours], [d[2] for d in theirs], atol=0.5), index
    assert report["moving_detections_on"] == report["moving_detections_off"] > 100
    # Frames are published in order and skipped ones are never published as empty.
    assert list(on.frames) == sorted(on.frames)
    text = format_figures(report)
    assert f"saved {report['inferences_saved']}" in text
    assert "lost 0" in text


def test_detect_fps_and_the_camera_rules_on_the_real_pipeline(
    runs: dict[str, GateRun], clip: StillClip
) -> None:
    rules, off = runs["rules"], runs["off"]
    assert rules.inferred == pytest.approx(clip.frames / 2, abs=2)  # 5 of the clip's 10 fps
    assert rules.skipped_rate == clip.frames - rules.inferred
    assert rules.handled == clip.frames
    assert np.diff(sorted(rules.frames)).max() <= 3  # evenly spaced on the video's clock
    people = [d for frame in rules.frames.values() for d in frame if d[0] == "person"]
    assert people
    for _, score, (x1, y1, x2, y2) in people:
        assert score >= 0.5
        assert (x2 - x1) * (y2 - y1) >= 600 - 1  # the payload rounds boxes to 0.1 px
    # The rules only remove: every detection left was there with the gate and rules off.
    for index, found in rules.frames.items():
        assert all(any(d[0] == o[0] and d[1] == o[1] for o in off.frames[index])
                   for d in found), index


def test_a_mask_over_the_pavement_removes_the_people_walking_on_it(
    config: AgentConfig, engine: OpenVinoEngine, clip: StillClip
) -> None:
    left = MaskConfig(name="left", points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
    masked = play(config, engine, clip, DetectConfig(fps=1, min_area={}), masks=[left])
    anchors = [((x1 + x2) / 2) for frame in masked.frames.values() for _, _, (x1, _, x2, _)
               in frame]
    assert anchors
    assert min(anchors) >= 384 * 0.5 - 0.5



def test_bench_has_the_motion_flag() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "--motion"]).section_motion is True
    assert parser.parse_args(["bench"]).section_motion is False
