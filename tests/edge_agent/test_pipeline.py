"""One camera's pipeline with the real OpenVINO engine on the sample model, frames handed
in by an in-process source: results are published in frame order whatever order the
engine finishes in, never more than `depth` frames are in flight, and detections come
out in the frame's own pixels. Per-frame faults are test_pipeline_faults.py's subject."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.camera import Camera, Frame
from edge_agent.config.model import DriftConfig, FileCamera
from edge_agent.delivery.camera import FrameOutcome
from edge_agent.health.drift import DriftWatch
from edge_agent.pipeline import CameraPipeline
from engines.base import Engine, InferResult
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter


class HeldEngine(Engine):
    """The real engine, whose results are handed back after `hold(index)` seconds: a
    device that finishes requests late or out of order."""

    def __init__(self, real: OpenVinoEngine, hold: float | dict[int, float]) -> None:
        self.real, self.hold = real, hold
        self.backend, self.device = real.backend, real.device
        self.input, self.info = real.input, real.info
        self.submitted = 0
        self.completed: list[int] = []
        self.lock = threading.Lock()

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        index, self.submitted = self.submitted, self.submitted + 1
        result = self.real.submit(tensor).result(timeout=60)
        held: Future[InferResult] = Future()

        def complete() -> None:
            with self.lock:
                self.completed.append(index)
            held.set_result(result)

        delay = self.hold if isinstance(self.hold, float) else self.hold.get(index, 0.0)
        threading.Timer(delay, complete).start()
        return held

    def close(self) -> None:
        """The real engine is the fixture's to close."""


class Sink:
    """Records payloads; refuses (returns False for) the sequences in `refuse`."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.payloads: list[dict] = []
        self.refuse = refuse

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        body = json.loads(payload)
        if body["sequence"] in self.refuse:
            return False
        self.payloads.append(body)
        return True


@pytest.fixture(scope="module")
def engine(samples: Path) -> Iterator[OpenVinoEngine]:
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx") as real:
        yield real


@pytest.fixture(scope="module")
def image(samples: Path) -> np.ndarray:
    return cv2.imread(str(samples / "images" / "kite_and_cold.jpg"))


def make_pipeline(samples: Path, engine: Engine, sink: Sink,
                  depth: int | None = None) -> CameraPipeline:
    config = FileCamera(id="cam", type="file", path=samples / "media" / "vtest.mp4")
    return CameraPipeline(Camera(config), engine, sink, DetectionFilter(), depth=depth)


def run(pipeline: CameraPipeline, images: list[np.ndarray]) -> None:
    """Feed the images as capture would, from another thread, then the end of stream;
    returns once the pipeline has published everything."""
    pipeline.start()
    never = threading.Event()

    def source() -> None:
        for sequence, frame in enumerate(images):
            pipeline.camera.frames.put(Frame("cam", sequence, frame, time.time(), 1.0), never)
        pipeline.camera.frames.close()

    threading.Thread(target=source, daemon=True).start()
    worker = pipeline.workers()[0]
    worker.join(120)
    assert not worker.is_alive()


def test_results_are_published_in_frame_order_when_the_engine_finishes_out_of_order(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray
) -> None:
    # Every third is late by far more than an inference takes, even on a loaded machine.
    held = HeldEngine(engine, dict.fromkeys(range(0, 9, 3), 1.0))
    sink = Sink()
    run(make_pipeline(samples, held, sink, depth=3), [image] * 9)
    assert held.completed != sorted(held.completed), "the engine did finish out of order"
    assert [p["sequence"] for p in sink.payloads] == list(range(9))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_never_more_than_depth_frames_in_flight(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray, depth: int
) -> None:
    """A slow device (1 s a request, far more than an inference) fills the pipeline to
    its depth and no further."""
    held = HeldEngine(engine, 1.0)
    sink = Sink()
    most = 0
    submit = held.submit

    def counted(tensor: np.ndarray) -> Future[InferResult]:
        nonlocal most  # submits and publishes both happen on the pipeline's thread
        most = max(most, held.submitted + 1 - len(sink.payloads))
        return submit(tensor)

    held.submit = counted  # type: ignore[method-assign]
    frames = 2 * depth + 2
    run(make_pipeline(samples, held, sink, depth=depth), [image] * frames)
    assert most == depth
    assert len(sink.payloads) == frames


def test_default_depth_is_one_more_than_the_engine_runs_at_once(
    samples: Path, engine: OpenVinoEngine
) -> None:
    assert make_pipeline(samples, engine, Sink()).depth == engine.parallelism + 1


def test_detections_are_in_the_frame_own_pixels(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray
) -> None:
    """The same picture at two sizes: boxes scale with the frame, the letterbox is undone."""
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
    sink = Sink()
    run(make_pipeline(samples, engine, sink), [image, small])
    full, half = sink.payloads
    assert full["frame"] == {"width": image.shape[1], "height": image.shape[0]}
    assert half["frame"] == {"width": small.shape[1], "height": small.shape[0]}

    def boxes(payload: dict) -> dict[str, list[list[float]]]:
        found: dict[str, list[list[float]]] = {}
        for d in payload["detections"]:
            if d["score"] >= 0.5:
                box = d["box"]
                found.setdefault(d["label"], []).append(
                    [box["x1"], box["y1"], box["x2"], box["y2"]])
        return {label: sorted(found[label]) for label in found}

    big, little = boxes(full), boxes(half)
    assert big, "the kite picture has confident detections"
    assert big.keys() == little.keys()
    for label, found in big.items():
        assert len(found) == len(little[label]), label
        assert np.allclose(np.array(found), 2 * np.array(little[label]), atol=8.0), label
    for d in full["detections"]:
        box = d["box"]
        assert 0 <= box["x1"] < box["x2"] <= image.shape[1]
        assert 0 <= box["y1"] < box["y2"] <= image.shape[0]


def test_a_refused_message_is_counted_and_the_rest_go_on(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray
) -> None:
    """The sink (the publisher) may drop a message when its queue is full: counted as not
    delivered, the frames after it are still published."""
    small = cv2.resize(image, (320, 240))
    sink = Sink(refuse=frozenset({1, 2}))
    pipeline = make_pipeline(samples, engine, sink)
    run(pipeline, [small] * 6)
    assert [p["sequence"] for p in sink.payloads] == [0, 3, 4, 5]
    assert (pipeline.published, pipeline.not_delivered, pipeline.frames_failed) == (4, 2, 0)
    assert pipeline.times.frames == 6


class LabelRecorder:
    """A delivery that records the class names it is given (relabel) and lets every
    detections message out."""

    def __init__(self) -> None:
        self.relabelled: list[tuple[str, ...]] = []

    def on_frame(self, frame: Frame, detections: object, detected: object) -> FrameOutcome:
        return FrameOutcome(True, None)

    def stats(self) -> None:
        return None

    def reconfigure(self, camera: object) -> None:
        """Not called here."""

    def relabel(self, labels: Sequence[str]) -> None:
        self.relabelled.append(tuple(labels))


def test_a_model_swap_relabels_the_camera_delivery(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray,
) -> None:
    """Events, occupancy and snapshot topics follow the new model's class names, as the
    camera's class filter does (edge_agent.delivery.camera.CameraDelivery.relabel)."""
    sink = Sink()
    pipeline = make_pipeline(samples, engine, sink)
    delivery = LabelRecorder()
    pipeline.delivery = delivery
    renamed = HeldEngine(engine, 0.0)
    names = tuple(f"thing{i}" for i in range(80))  # the sample has ids, no names
    renamed.info = dataclasses.replace(engine.info, class_names=names)
    pipeline.use_engine(renamed, DetectionFilter())  # no loop running: taken at once
    assert pipeline.engine is renamed
    assert delivery.relabelled == [names]
    run(pipeline, [image] * 3)
    assert len(sink.payloads) == 3
    labels = {d["label"] for p in sink.payloads for d in p["detections"]}
    assert labels
    assert labels <= set(names)


def test_a_model_swap_relabels_the_drift_watch(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray,
) -> None:
    """The drift watch's class rates follow the model that runs after a swap (it kept
    the first model's names: a review found it)."""
    pipeline = make_pipeline(samples, engine, Sink())
    pipeline.drift = DriftWatch(DriftConfig(sample_every=1, baseline_samples=5,
                                            window_samples=5), engine.info.class_names)
    renamed = HeldEngine(engine, 0.0)
    names = tuple(f"thing{i}" for i in range(80))
    renamed.info = dataclasses.replace(engine.info, class_names=names)
    pipeline.use_engine(renamed, DetectionFilter())  # no loop running: taken at once
    assert pipeline.drift.class_names == names
    run(pipeline, [image] * 5)
    rates = pipeline.drift.report().class_rates
    assert rates
    assert set(rates) <= set(names)
