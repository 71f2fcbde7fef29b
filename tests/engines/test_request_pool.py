"""OpenVINO's RequestPool (engines/openvino.py): results come back to the right frame from
several submitting threads at once, close() settles what is in flight, and an engine that
is idle, closed or forgotten holds no thread (the agent's exit waits for threads)."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engines.errors import EngineError
from engines.openvino import OpenVinoEngine, RequestPool
from tests.models import slow_model


def _collectors() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("openvino-")]


def _until(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def engine(samples: Path, monkeypatch: pytest.MonkeyPatch) -> OpenVinoEngine:
    monkeypatch.setattr(RequestPool, "IDLE_S", 0.1)
    opened = OpenVinoEngine(samples / "models" / "yolox_nano.onnx")
    yield opened
    opened.close()


def test_one_request_more_than_openvino_asks_for(engine: OpenVinoEngine) -> None:
    optimal = int(engine.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    assert engine.parallelism == optimal + 1


def test_threads_submitting_at_once_each_get_their_own_outputs(engine: OpenVinoEngine) -> None:
    """Six cameras' threads on one engine: each frame's outputs are its own (frames that
    differ give outputs that differ, and the same frame gives the same outputs)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, engine.input.shape, dtype=np.uint8) for _ in range(3)]
    expected = [engine.submit(frame).result(30).outputs[0] for frame in frames]
    assert not np.allclose(expected[0], expected[1])
    wrong: list[str] = []

    def camera(index: int) -> None:
        for n in range(12):
            which = (index + n) % 3
            got = engine.submit(frames[which]).result(60).outputs[0]
            if not np.allclose(got, expected[which], atol=1e-3):
                wrong.append(f"camera {index} frame {n}")

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not wrong


def test_close_settles_what_is_in_flight_and_refuses_more(engine: OpenVinoEngine) -> None:
    tensor = np.zeros(engine.input.shape, engine.input.dtype)
    futures = [engine.submit(tensor) for _ in range(engine.parallelism * 2)]
    engine.close()
    assert all(future.done() for future in futures)
    assert all(len(future.result().outputs) == 1 for future in futures)
    assert not _collectors()
    with pytest.raises(EngineError, match="closed"):
        engine.submit(tensor)


def test_an_idle_or_forgotten_engine_holds_no_thread(samples: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RequestPool, "IDLE_S", 0.1)
    forgotten = OpenVinoEngine(samples / "models" / "yolox_nano.onnx")
    tensor = np.zeros(forgotten.input.shape, forgotten.input.dtype)
    for future in [forgotten.submit(tensor) for _ in range(4)]:
        future.result(30)
    assert _until(lambda: not _collectors()), _collectors()  # idle: the thread ended
    forgotten.submit(tensor).result(30)  # and comes back for the next frame
    del forgotten  # never closed, as a failed start once left it
    gc.collect()
    assert _until(lambda: not _collectors()), _collectors()


def test_a_request_that_fails_fails_its_own_frame_only(engine: OpenVinoEngine) -> None:
    good = np.zeros(engine.input.shape, engine.input.dtype)
    with pytest.raises(Exception, match=r"(?i)shape|dimension|size"):
        engine.submit(np.zeros((1, 3, 7, 7), np.float32)).result(30)
    assert len(engine.submit(good).result(30).outputs) == 1


def test_a_collector_that_cannot_start_fails_that_frame_only(
    engine: OpenVinoEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads ("can't start new thread"): that submit fails with the reason, the
    request is not lost, and the next submit starts a collector and settles."""
    tensor = np.zeros(engine.input.shape, engine.input.dtype)
    assert _until(lambda: not _collectors())
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(EngineError, match="cannot start the thread"):
        engine.submit(tensor)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    futures = [engine.submit(tensor) for _ in range(engine.parallelism + 1)]
    assert all(len(future.result(30).outputs) == 1 for future in futures)


def test_close_cancels_the_requests_nobody_waits_for(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping pipeline cancels the frames it gave up on: their OpenVINO requests must
    stop too (a queued one never runs), so a stop with a slow model does not wait for
    them; frames still wanted get their results."""
    monkeypatch.setattr(RequestPool, "IDLE_S", 0.1)
    model = slow_model(samples, tmp_path / "slow", channels=96, kernel=11)

    def close_time(cancel: bool) -> tuple[float, list]:
        engine = OpenVinoEngine(model)
        tensor = np.zeros(engine.input.shape, engine.input.dtype)
        engine.infer(tensor)  # compiled and warm
        futures = [engine.submit(tensor) for _ in range(engine.parallelism)]
        if cancel:
            assert all(future.cancel() for future in futures)
        started = time.monotonic()
        engine.close()
        return time.monotonic() - started, futures

    wanted_s, wanted = close_time(cancel=False)
    abandoned_s, _ = close_time(cancel=True)
    assert all(f.exception() is None and len(f.result().outputs) for f in wanted)
    assert abandoned_s < wanted_s / 3, (abandoned_s, wanted_s)
    assert _until(lambda: not _collectors())  # no thread left behind either
