"""ONNX Runtime backend: the same model, the same boxes as OpenVINO, clear errors.

Real onnxruntime (the `test` extra installs it) on the sample YOLOX-nano; OpenVINO at
f32 is the reference: same classes, boxes within a pixel, on every sample image.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import registry
from engines.errors import BackendUnavailableError, EngineError, ModelLoadError
from engines.model_info import read_labels
from engines.onnxruntime import OnnxRuntimeEngine
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, postprocess
from engines.preprocess import prepare
from tests.helpers import onnx_metadata_entry

FILTER = DetectionFilter(score_threshold=0.3)


@pytest.fixture(scope="module")
def model(samples: Path) -> Path:
    return samples / "models" / "yolox_nano.onnx"


@pytest.fixture(scope="module")
def pair(model: Path, samples: Path) -> Iterator[tuple[OpenVinoEngine, OnnxRuntimeEngine]]:
    names = read_labels(samples / "models" / "coco_labels.txt")
    with OpenVinoEngine(model, class_names=names, precision="f32") as reference, \
            OnnxRuntimeEngine(model, class_names=names) as engine:
        yield reference, engine


def detections_of(engine: OpenVinoEngine | OnnxRuntimeEngine, image: np.ndarray):
    tensor, letterbox = prepare(image, engine.input)
    return postprocess(engine.info.family, engine.infer(tensor).outputs, engine.input, FILTER,
                       letterbox, image.shape[1], image.shape[0])


IMAGES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "samples" / "images")
                .glob("*.jpg")) or ["pets.jpg"]


@pytest.mark.parametrize("image_name", IMAGES)
def test_same_classes_and_boxes_within_a_pixel_of_openvino(
    pair: tuple[OpenVinoEngine, OnnxRuntimeEngine], samples: Path, image_name: str
) -> None:
    reference, engine = pair
    image = cv2.imread(str(samples / "images" / image_name))
    want, got = detections_of(reference, image), detections_of(engine, image)
    assert len(want) > 0, image_name
    assert [engine.info.class_names[c] for c in got.class_ids] == [
        reference.info.class_names[c] for c in want.class_ids
    ]
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1.0)
    np.testing.assert_allclose(got.scores, want.scores, atol=0.01)


def test_model_is_described_as_openvino_describes_it(
    pair: tuple[OpenVinoEngine, OnnxRuntimeEngine],
) -> None:
    reference, engine = pair
    assert engine.backend == "onnxruntime"
    assert engine.device == "CPU"
    assert (engine.info.family, engine.info.output_shapes) == ("yolox", ((1, 3549, 85),))
    assert (engine.input.height, engine.input.width, engine.input.layout) == (416, 416, "NCHW")
    assert engine.info.sha256 == reference.info.sha256
    assert engine.info.class_names == reference.info.class_names


def test_class_names_and_imgsz_from_onnx_metadata(tmp_path: Path, model: Path) -> None:
    named = tmp_path / "named.onnx"
    names = "{" + ", ".join(f"{i}: 'thing{i}'" for i in range(80)) + "}"
    named.write_bytes(model.read_bytes() + onnx_metadata_entry(b"names", names.encode()))
    with OnnxRuntimeEngine(named) as engine, OpenVinoEngine(named) as reference:
        assert engine.info.class_names[:2] == ("thing0", "thing1")
        assert engine.info.metadata["names"] == names
        assert engine.info.class_names == reference.info.class_names


def test_in_flight_depth_is_what_it_was_given(model: Path) -> None:
    with OnnxRuntimeEngine(model, in_flight=3) as engine:
        assert engine.parallelism == 3
        tensor = np.zeros(engine.input.shape, np.float32)
        futures = [engine.submit(tensor) for _ in range(7)]  # more than the depth: blocks, runs
        shapes = {tuple(f.result(timeout=120).outputs[0].shape) for f in futures}
        assert shapes == {(1, 3549, 85)}
        assert engine.raw_throughput(0.5) > 0


def test_submit_blocks_while_the_depth_is_in_flight(model: Path) -> None:
    with OnnxRuntimeEngine(model, in_flight=1) as engine:
        gate = threading.Event()
        real_run = engine._session.run

        def slow_run(*args: object, **kwargs: object) -> object:
            gate.wait(30)
            return real_run(*args, **kwargs)

        engine._session = type("Slow", (), {"run": staticmethod(slow_run)})()
        tensor = np.zeros(engine.input.shape, np.float32)
        first = engine.submit(tensor)
        second: list[object] = []
        waiter = threading.Thread(target=lambda: second.append(engine.submit(tensor)))
        waiter.start()
        time.sleep(0.5)
        assert not second  # the one slot is taken
        gate.set()
        waiter.join(60)
        assert second
        assert first.result(timeout=60) is not None


def test_close_twice_then_submit_is_a_clear_error(model: Path) -> None:
    engine = OnnxRuntimeEngine(model)
    tensor = np.zeros(engine.input.shape, np.float32)
    engine.infer(tensor)
    engine.close()
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.submit(tensor)


def test_bad_model_files_are_named(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nowhere\.onnx: file not found"):
        OnnxRuntimeEngine(tmp_path / "nowhere.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(model.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx: not a readable ONNX model"):
        OnnxRuntimeEngine(cut)
    xml, weights = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("<net/>")
    weights.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime runs \.onnx files"):
        OnnxRuntimeEngine(xml)


def test_a_provider_this_build_lacks_is_named(model: Path) -> None:
    with pytest.raises(BackendUnavailableError,
                       match=r"has no TensorrtExecutionProvider; this build offers .*CPU"):
        OnnxRuntimeEngine(model, providers=("TensorrtExecutionProvider",))


def test_missing_onnxruntime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "engines.onnxruntime")
    with pytest.raises(BackendUnavailableError,
                       match=r"install onnxruntime \(pip install 'edge-agent\[onnxruntime\]'\)"):
        registry.backend_class("onnxruntime")
    status = registry.get("onnxruntime").runtime_status()
    assert not status.usable
    assert status.problem.endswith("install onnxruntime (pip install 'edge-agent[onnxruntime]')")
