"""Validation before a swap, on real (tiny, generated) OpenVINO models and the running
model's detection counts: each kind of refusal, and what passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.models.checks import ModelRejectedError, validate
from edge_agent.models.handover import RecentFrame
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter
from tests.models import shaped_model

ROWS = 3549  # a 416x416 YOLOX grid
FRAMES = [RecentFrame(i, np.full((240, 320, 3), 40 * i, np.uint8), 0) for i in range(3)]


def engine(tmp_path: Path, name: str, fill: float) -> OpenVinoEngine:
    return OpenVinoEngine(shaped_model(tmp_path / name, [1, ROWS, 85], fill=fill),
                          family="yolox")


@pytest.mark.parametrize(("fill", "running", "message"), [
    (float("nan"), 0, "not usable on a blank frame: every model output value is NaN"),
    (float("inf"), 0, "not usable on a blank frame"),
    (0.0, 5, "the new model detects 0 objects on 3 recent frames where the running model "
     "detected 15"),
    (0.0, 0, None),  # nothing to compare with: the running model saw nothing either
])
def test_validation(tmp_path: Path, fill: float, running: int, message: str | None) -> None:
    frames = {"cam": [RecentFrame(f.sequence, f.image, running) for f in FRAMES]}
    with engine(tmp_path, "m", fill) as loaded:
        if message is None:
            result = validate(loaded, DetectionFilter(), frames, 0.3)
            assert result.frames == 3
            assert result.cameras["cam"] == {"frames": 3, "running_detections": 0,
                                             "new_detections": 0}
        else:
            with pytest.raises(ModelRejectedError, match=message):
                validate(loaded, DetectionFilter(), frames, 0.3)


def test_no_recent_frames_checks_the_blank_frame_only(tmp_path: Path) -> None:
    with engine(tmp_path, "m", 0.0) as loaded:
        result = validate(loaded, DetectionFilter(), {"cam": []}, 0.3)
    assert result.frames == 0
    assert result.baseline_rates() == {}
