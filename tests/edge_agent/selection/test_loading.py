"""Loading the chosen backend, and falling back when one fails to load: a table of ways a
backend fails (each a real failure of engines/tensorrt.py against the narrow fake CUDA of
tests/engines/fake_tensorrt.py), each tried under `auto` and with the backend forced.

The policy's order on recorded hardware is tested in test_policy.py; here only what
`select_engine` makes of a candidate that does not load: under `auto` the next one is
loaded and the failure is kept as a fallback note; forced, it is fatal, with the same why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_agent.config.model import (
    AgentConfig,
    AutoBackend,
    BackendConfig,
    ModelConfig,
    TensorRtBackend,
)
from edge_agent.errors import ConfigError
from edge_agent.selection.loading import detection_filter, select_engine
from edge_agent.selection.probe import HardwareReport, Runtimes, probe
from engines.errors import EngineError
from tests.engines import fake_tensorrt
from tests.helpers import IR_LABELS

ORIN = Path(__file__).resolve().parents[2] / "hardware" / "jetson_orin"
TRT_OK = Runtimes(tensorrt="10.3.0", pycuda="2024.1.2", openvino="2024.6.0",
                  openvino_devices=("CPU",))

# (the machine the fake pretends to be, what the fallback note says after "tensorrt: ")
FAILURES = {
    "no CUDA device": ({"device_count": 0}, "CUDA device 0 does not exist"),
    "driver not loaded": ({"driver_ok": False}, "CUDA is not usable (cuInit failed"),
}


def config(samples: Path, tmp_path: Path, backend: BackendConfig) -> AgentConfig:
    return AgentConfig(
        model={"path": samples / "models" / "yolox_nano.onnx"},
        cameras=[{"id": "cam", "type": "usb"}],
        backend=backend,
        state_dir=tmp_path / "state",
    )


def orin(monkeypatch: pytest.MonkeyPatch, **gpu: object) -> HardwareReport:
    """An Orin whose TensorRT and CUDA behave as `gpu` says."""
    fake_tensorrt.install(monkeypatch, fake_tensorrt.FakeGpu(**gpu))  # type: ignore[arg-type]
    return probe(ORIN, TRT_OK)


def test_a_backend_that_loads_is_used_with_no_fallback(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's control: with a working GPU the same setup runs TensorRT."""
    selection = select_engine(config(samples, tmp_path, AutoBackend()), orin(monkeypatch))
    try:
        assert selection.engine.backend == "tensorrt"
        assert (selection.fallbacks, selection.degraded) == ((), False)
    finally:
        selection.engine.close()


@pytest.mark.parametrize(("gpu", "why"), FAILURES.values(), ids=FAILURES.keys())
def test_under_auto_a_backend_that_fails_to_load_falls_back_and_says_why(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, gpu: dict, why: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_agent.selection.loading"):
        selection = select_engine(config(samples, tmp_path, AutoBackend()),
                                  orin(monkeypatch, **gpu))
    try:
        assert (selection.engine.backend, selection.engine.device) == ("openvino", "CPU")
        [note] = selection.fallbacks
        assert note.startswith(f"tensorrt: {why}"), note
        assert selection.degraded
        warnings = [r.getMessage() for r in caplog.records]
        assert f"tensorrt failed, trying the next backend: {note[len('tensorrt: '):]}" in warnings
    finally:
        selection.engine.close()
    state = fake_tensorrt.STATE
    assert state.pushes == state.pops, "the failed load left a CUDA context pushed"


@pytest.mark.parametrize(("gpu", "why"), FAILURES.values(), ids=FAILURES.keys())
def test_a_forced_backend_that_fails_to_load_is_fatal_with_the_same_why(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu: dict, why: str
) -> None:
    forced = config(samples, tmp_path, TensorRtBackend(type="tensorrt"))
    with pytest.raises(EngineError) as caught:
        select_engine(forced, orin(monkeypatch, **gpu))
    message = str(caught.value)
    assert message.startswith(f"tensorrt is set in the config and cannot load the model: {why}")
    assert "use 'backend: {type: auto}'" in message
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(("classes", "ids"), [
    (["car", "person"], [0, 2]), ([2, "2", "car"], [2]), (["traffic light"], [3]),
    (["traffic_light", 0], [0, 3]), ([4], None), (["4"], None), (["truck"], None),
])  # -1 and ids above MAX_CLASS_ID: refused with the config (test_class_keys.py)
def test_model_classes_resolve_as_every_other_class_key(classes: list, ids: list | None) -> None:
    """model.classes takes what detect, masks and zones take (camera_filter.class_id); an id
    past the last class is refused, not silently kept (it would match nothing)."""
    model = ModelConfig(path="m.onnx", classes=classes)
    if ids is None:
        with pytest.raises(ConfigError, match=r"model\.classes: .* is not a class of this model"):
            detection_filter(model, IR_LABELS)
    else:
        assert detection_filter(model, IR_LABELS).class_ids.tolist() == ids
