"""A request cancelled while the runtime still runs it (a stopping pipeline cancels what
is in flight): every backend's completion path drops the late result quietly, and close()
does not raise for it.

Before the fix, OpenVINO's callback called set_result on the cancelled future
(InvalidStateError: CANCELLED on its thread, re-raised by wait_all in close()), and
ONNX Runtime leaked a slot for each request cancelled before it started, so submits
blocked for ever once `in_flight` had leaked.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.base import InferResult, settle
from engines.onnxruntime import OnnxRuntimeEngine
from engines.openvino import OpenVinoEngine
from tests.engines import fake_tensorrt
from tests.engines.fake_tensorrt import FakeGpu
from tests.models import slow_model


@pytest.mark.parametrize(
    "state", ["pending", "cancelled", "finished", "failed"],
)
def test_settle_tolerates_every_future_state(state: str) -> None:
    future: Future[InferResult] = Future()
    if state == "cancelled":
        future.cancel()
    elif state == "finished":
        future.set_result(InferResult([], 1.0))
    elif state == "failed":
        future.set_exception(RuntimeError("x"))
    late = InferResult([np.zeros(1)], 2.0)
    assert settle(future, late) is (state == "pending")
    assert settle(future, error=RuntimeError("late")) is False


def test_openvino_request_cancelled_mid_inference(tmp_path: Path, samples: Path) -> None:
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        engine = OpenVinoEngine(slow_model(samples, tmp_path / "slow"))
        blank = np.zeros(engine.input.shape, engine.input.dtype)
        futures = [engine.submit(blank) for _ in range(engine.parallelism)]
        assert all(future.cancel() for future in futures)  # about a second each: still running
        engine.close()  # raised InvalidStateError from wait_all before the fix
        engine.close()
    finally:
        threading.excepthook = previous
    assert errors == []


def test_onnxruntime_requests_cancelled_before_they_start_free_their_slot(
    samples: Path,
) -> None:
    engine = OnnxRuntimeEngine(samples / "models" / "yolox_nano.onnx", in_flight=1)
    blank = np.zeros(engine.input.shape, engine.input.dtype)
    done = threading.Event()

    def churn() -> None:
        for _ in range(20):
            engine.submit(blank).cancel()  # some are cancelled before the pool starts them
        engine.infer(blank)
        done.set()

    threading.Thread(target=churn, daemon=True).start()
    assert done.wait(60), "a cancelled request kept its slot: submit blocked"
    engine.close()


def test_tensorrt_request_cancelled_while_queued(
    monkeypatch: pytest.MonkeyPatch, samples: Path
) -> None:
    fake_tensorrt.install(monkeypatch, FakeGpu())
    engine_class: Any = sys.modules["engines.tensorrt"].TensorRtEngine
    engine = engine_class(samples / "models" / "yolox_nano.onnx", num_contexts=1)
    blank = np.zeros(engine.input.shape, engine.input.dtype)
    futures = [engine.submit(blank) for _ in range(4)]
    cancelled = [future.cancel() for future in futures]
    engine.close()
    for future, was_cancelled in zip(futures, cancelled, strict=True):
        assert future.cancelled() if was_cancelled else future.done()
