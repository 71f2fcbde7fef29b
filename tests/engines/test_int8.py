"""A real NNCF INT8 build of the sample model, judged by the guard on real street frames:
the good build passes, damaged ones are refused, and the verdict is kept with the build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engines.detector import Detector
from engines.int8 import compare, decode_head, detect_all
from engines.int8_cache import MODEL, RECORD, BuildRecord, read_record
from engines.int8_guard import verdict
from engines.openvino import OpenVinoEngine
from tests.helpers import scaled_fake_quantize


@pytest.mark.slow
def test_a_good_build_passes_and_its_verdict_is_kept(int8_build: dict) -> None:
    verdict_json, folder = int8_build["verdict"], int8_build["folder"]
    assert int8_build["code"] == 0, verdict_json["reason"]
    assert verdict_json["passed"] is True
    f1 = verdict_json["score"]["f1"]
    print(f"good INT8 build: F1 {f1:.3f} against FP ({verdict_json['reason']})")
    assert f1 >= 0.8
    assert verdict_json["score"]["reference"] >= 100  # people in 20 street frames
    assert (folder / MODEL).is_file()
    assert (folder / MODEL).with_suffix(".bin").is_file()
    record = read_record(folder)
    assert record is not None
    assert record.to_json() == json.loads((folder / RECORD).read_text())
    assert record.passed
    assert record.source.startswith("images ")
    assert BuildRecord.from_json(record.to_json()) == record
    # Re-judged under a stricter threshold the same score is refused, without a rebuild.
    ok, reason = record.judged(min(1.0, f1 + 0.01))
    assert not ok
    assert "below int8_min_f1" in reason


@pytest.mark.slow
def test_clipped_activation_ranges_are_refused(int8_build: dict, samples: Path,
                                               tmp_path: Path) -> None:
    """The same build with every FakeQuantize range 20x too narrow: a corrupted scale."""
    from edge_agent.selection.int8 import image_frames

    folder = int8_build["folder"]
    damaged = tmp_path / MODEL
    scaled_fake_quantize(folder / MODEL, damaged, 0.05)
    check = image_frames(int8_build["images"])[-20:]
    model = samples / "models" / "yolox_nano.onnx"
    with Detector(OpenVinoEngine(model)) as fp, Detector(OpenVinoEngine(damaged)) as bad:
        reference = detect_all(fp, check)
        result = compare(fp, bad, check, reference)
    passed, reason = verdict(result, 0.9)
    print(f"clipped ranges: F1 {result.f1:.3f}")
    assert not passed
    assert result.f1 < 0.5, reason


@pytest.mark.slow
def test_a_damaged_record_is_rebuilt_not_trusted(int8_build: dict, tmp_path: Path) -> None:
    copy = tmp_path / "build"
    shutil.copytree(int8_build["folder"], copy)
    (copy / RECORD).write_text("{not json")
    assert read_record(copy) is None
    shutil.copy(int8_build["folder"] / RECORD, copy / RECORD)
    (copy / MODEL).unlink()
    assert read_record(copy) is None  # a passed verdict without its model: rebuild


def test_the_decode_head_stays_out_of_quantization(samples: Path) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(samples / "models" / "yolox_nano.onnx"))
    head = set(decode_head(model))
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    assert head
    assert not any(types[name] in ("Convolution", "Parameter") for name in head)
    assert {types[name] for name in head} >= {"Sigmoid", "Concat"}


def test_frames_with_nothing_to_judge_are_refused_before_quantizing(
    samples: Path, tmp_path: Path
) -> None:
    import numpy as np

    from engines.int8 import build
    from engines.int8_cache import Calibration

    def never(path: Path) -> Detector:
        raise AssertionError(f"{path}: nothing should be quantized or loaded")

    model = samples / "models" / "yolox_nano.onnx"
    grey = [np.full((576, 768, 3), 114, np.uint8)] * 4
    with Detector(OpenVinoEngine(model)) as fp:
        record = build(model_path=model, model_sha256="0" * 64, family="yolox",
                       folder=tmp_path, calibration_frames=grey, check_frames=grey,
                       calibration=Calibration(frames=4), min_f1=0.5, reference=fp,
                       open_int8=never, source="test")
    assert not record.passed
    assert record.reason.startswith("cannot judge: the FP model found only 0 objects")
    assert not (tmp_path / MODEL).exists()
    assert read_record(tmp_path) == record


@pytest.mark.slow
def test_the_guard_compares_any_two_backends(samples: Path) -> None:
    """Backend-agnostic: ONNX Runtime scored against OpenVINO at f32 (the same model, so
    the same objects), as a TensorRT INT8 engine would be scored against its FP16 one."""
    from engines.onnxruntime import OnnxRuntimeEngine
    from tests.helpers import video_frames

    model = samples / "models" / "yolox_nano.onnx"
    frames = video_frames(samples / "media" / "vtest.mp4", 400, 800, 40)
    with Detector(OpenVinoEngine(model, precision="f32")) as openvino, \
            Detector(OnnxRuntimeEngine(model)) as onnxruntime:
        result = compare(openvino, onnxruntime, frames)
    assert result.frames == 10
    assert result.reference >= 50
    assert result.f1 >= 0.98, result
