"""One camera's pipeline with the real OpenVINO engine: a bad frame is lost, not the loop.

Faults are injected at each per-frame step (submit, inference, publishing, drift); a
pipeline whose every frame fails is broken and its worker is given up. Time: latency is
measured on the monotonic clock, so a wall-clock step cannot make it negative or huge.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent import pipeline as pipeline_module
from edge_agent import workers
from edge_agent.capture.camera import Camera, Frame
from edge_agent.config.model import FileCamera
from edge_agent.pipeline import CameraPipeline
from engines.base import Detections, Engine, InferResult
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter

YEAR_S = 365 * 24 * 3600.0


class Faulty(Engine):
    """The real engine; `fail` says which submits (0-based) raise or give a failed Future."""

    def __init__(self, real: OpenVinoEngine, fail: set[int], how: str) -> None:
        self.real, self.fail, self.how, self.count = real, fail, how, 0
        self.backend, self.device = real.backend, real.device
        self.input, self.info = real.input, real.info

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        index, self.count = self.count, self.count + 1
        if index in self.fail or -1 in self.fail:
            if self.how == "submit":
                raise RuntimeError(f"device lost on request {index}")
            future: Future[InferResult] = Future()
            future.set_exception(RuntimeError(f"inference {index} failed"))
            return future
        return self.real.submit(tensor)

    def close(self) -> None:
        """The real engine is the fixture's to close."""


class ListSink:
    def __init__(self, fail: set[int] = frozenset()) -> None:
        self.payloads: list[dict] = []
        self.fail = fail

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        body = json.loads(payload)
        if body["sequence"] in self.fail:
            raise ValueError("Out of range float values are not JSON compliant")
        self.payloads.append(body)
        return True


class BrokenDrift:
    def __init__(self, fail: set[int]) -> None:
        self.fail, self.count = fail, 0

    def offer(self, image: np.ndarray, detections: Detections) -> None:
        index, self.count = self.count, self.count + 1
        if index in self.fail:
            raise FloatingPointError("drift statistics overflowed")


@pytest.fixture(scope="module")
def engine(samples: Path) -> Iterator[OpenVinoEngine]:
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx") as real:
        yield real


@pytest.fixture(scope="module")
def image(samples: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(samples / "images" / "kite_and_cold.jpg")), (320, 240))


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_DELAY_S", 0.01)


def make_pipeline(samples: Path, engine: Engine, sink: ListSink) -> CameraPipeline:
    config = FileCamera(id="cam", type="file", path=samples / "media" / "vtest.mp4")
    return CameraPipeline(Camera(config), engine, sink, DetectionFilter())


def feed(pipeline: CameraPipeline, frames: list[Frame]) -> None:
    """Hand the frames over as capture would, then wait until the pipeline has them all."""
    pipeline.start()
    never = threading.Event()
    for frame in frames:
        pipeline.camera.frames.put(frame, never)
    pipeline.camera.frames.close()
    pipeline.workers()[0].join(60)
    assert not pipeline.workers()[0].is_alive()


def frames(image: np.ndarray, count: int, **fields: object) -> list[Frame]:
    return [Frame("cam", i, image, time.time(), 1.0, **fields) for i in range(count)]


@pytest.mark.parametrize(
    ("site", "published", "error"),
    [
        ("submit", 7, "cannot submit the frame to the engine: RuntimeError: device lost"),
        ("inference", 7, "inference failed: RuntimeError: inference 3 failed"),
        ("publish", 7, "cannot turn the model output into a message: ValueError: Out of range"),
        ("drift", 8, "drift watch failed: FloatingPointError"),
    ],
)
def test_a_fault_in_one_frame_loses_that_frame_only(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray, site: str, published: int,
    error: str,
) -> None:
    runs = engine if site not in ("submit", "inference") else Faulty(engine, {3}, site)
    sink = ListSink({3} if site == "publish" else set())
    pipeline = make_pipeline(samples, runs, sink)
    if site == "drift":
        pipeline.drift = BrokenDrift({3})  # type: ignore[assignment]
    feed(pipeline, frames(image, 8))
    assert pipeline.frames_failed == 1
    assert len(sink.payloads) == published
    assert pipeline.last_error is not None
    assert pipeline.last_error.startswith(error), pipeline.last_error
    (worker, _capture) = pipeline.workers()
    assert worker.crashes == 0
    assert pipeline.state != "FAILED"


def test_every_frame_failing_means_a_broken_pipeline_given_up(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "FAILED_IN_A_ROW", 5)
    pipeline = make_pipeline(samples, Faulty(engine, {-1}, "submit"), ListSink())
    pipeline.start()
    stop = threading.Event()

    def capture() -> None:  # a live source: frames keep coming until nobody takes them
        sequence = 0
        while not stop.is_set() and not pipeline.camera.frames.closed:
            pipeline.camera.frames.put(Frame("cam", sequence, image, time.time(), 1.0), stop)
            sequence += 1

    source = threading.Thread(target=capture, daemon=True)
    source.start()
    worker = pipeline.workers()[0]
    worker.join(60)
    stop.set()
    assert pipeline.broken
    assert pipeline.state == "FAILED"
    assert worker.crashes == 4
    assert "given up" in (pipeline.camera.last_error or "")
    assert "5 frames in a row failed" in (pipeline.camera.last_error or "")


def test_latency_is_monotonic_across_a_wall_clock_step(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray
) -> None:
    """NTP steps the clock a year forward between capture and publish: latency stays sane,
    and the payload says the stamp was taken before the clock was synchronised."""
    sink = ListSink()
    pipeline = make_pipeline(samples, engine, sink)
    stepped = [
        Frame("cam", i, image, time.time() - YEAR_S, 1.0, clock_synced=False) for i in range(4)
    ]
    feed(pipeline, stepped)
    end_to_end = pipeline.latency.percentiles("end_to_end_ms", (0, 100))
    assert end_to_end is not None
    assert 0 <= end_to_end[0] <= end_to_end[1] < 10_000
    assert [p["clock_synced"] for p in sink.payloads] == [False] * 4
    assert all(p["timestamp"].startswith(time.strftime("%Y", time.gmtime(time.time() - YEAR_S)))
               for p in sink.payloads)


def test_per_frame_errors_are_logged_rate_limited(
    samples: Path, engine: OpenVinoEngine, image: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """Each error text differs (it names its request), so the log's repeat filter cannot
    collapse them: the pipeline logs one line per FRAME_ERROR_LOG_S and counts the rest."""
    sink = ListSink()
    pipeline = make_pipeline(samples, Faulty(engine, set(range(0, 20, 2)), "inference"), sink)
    with caplog.at_level(logging.ERROR, logger="edge_agent.pipeline"):
        feed(pipeline, frames(image, 20))
    assert pipeline.frames_failed == 10
    assert len(sink.payloads) == 10
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_agent.pipeline"]
    assert lines == ["camera cam frame 0: inference failed: RuntimeError: inference 0 failed"]
