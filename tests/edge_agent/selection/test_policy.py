"""Backend selection: the policy on recorded hardware, and real fallbacks with the sample model.

The policy is pure, so "TensorRT works" or "OpenVINO lists GPU" is injected as Runtimes.
The fallbacks are real: tensorrt does not load here and OpenVINO has no GPU/NPU here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.config.model import (
    AgentConfig,
    AutoBackend,
    BackendConfig,
    OpenVinoBackend,
    TensorRtBackend,
)
from edge_agent.errors import ConfigError
from edge_agent.selection.loading import select_engine
from edge_agent.selection.policy import candidates, forced, passed_over
from edge_agent.selection.probe import HardwareReport, Runtimes, detect_runtimes, probe
from engines.errors import EngineError
from engines.tensorrt_config import tensorrt_options
from tests.engines import fake_tensorrt

TREES = Path(__file__).resolve().parents[2] / "hardware"
MISSING = {"tensorrt": "No module named 'tensorrt'", "pycuda": "No module named 'pycuda'"}

TRT_OK = Runtimes(tensorrt="10.3.0", pycuda="2024.1.2", openvino="2024.6.0",
                  openvino_devices=("CPU",))
NO_TRT = Runtimes(openvino="2024.6.0", openvino_devices=("CPU",), errors=MISSING)
NO_PYCUDA = Runtimes(tensorrt="10.3.0", openvino="2024.6.0", openvino_devices=("CPU",),
                     errors={"pycuda": "libcuda.so.1: cannot open shared object file"})
NANO_TRT8 = Runtimes(tensorrt="8.2.1", pycuda="2021.1", openvino="2024.6.0",
                     openvino_devices=("CPU",))  # JetPack 4.6, the last for the Nano
INTEL_ALL = Runtimes(openvino="2024.6.0", openvino_devices=("CPU", "GPU", "NPU"), errors=MISSING)
AUTO = AutoBackend()


def on(tree: str, runtimes: Runtimes) -> HardwareReport:
    return probe(TREES / tree, runtimes)


def order(backend: BackendConfig, report: HardwareReport) -> list[tuple[str, str | None]]:
    return [(c.backend, c.device) for c in candidates(backend, report)]


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("tree", ["jetson_orin", "xeon_dgpu"])
def test_nvidia_with_tensorrt_tries_tensorrt_first(tree: str) -> None:
    report = on(tree, TRT_OK)
    assert order(AUTO, report) == [("tensorrt", None), ("openvino", "CPU")]
    first = candidates(AUTO, report)[0]
    assert first.reason.startswith(f"auto: NVIDIA hardware ({report.nvidia}) with tensorrt 10.3.0")
    assert passed_over(AUTO, report) == []


@pytest.mark.parametrize(
    ("tree", "what"),
    [("jetson_orin", "NVIDIA Jetson Orin NX"), ("xeon_dgpu", "NVIDIA RTX A4000")],
)
def test_nvidia_without_tensorrt_says_so(tree: str, what: str) -> None:
    report = on(tree, NO_TRT)
    assert order(AUTO, report) == [("openvino", "CPU")]
    [note] = passed_over(AUTO, report)
    assert note.startswith(f"tensorrt: NVIDIA GPU found ({what}")
    assert "but tensorrt does not import: No module named 'tensorrt'; " in note
    assert "pycuda does not import: No module named 'pycuda'" in note
    assert note.endswith("install per docs/backends.md")


def test_jetson_nano_with_tensorrt_8_runs_openvino_and_says_why() -> None:
    """TensorRT 8 imports on a Nano, but the backend needs 10: CPU, with the version named."""
    report = on("jetson_nano", NANO_TRT8)
    assert report.nvidia is not None
    assert order(AUTO, report) == [("openvino", "CPU")]
    [note] = passed_over(AUTO, report)
    assert note.startswith(f"tensorrt: NVIDIA GPU found ({report.nvidia}) but tensorrt 8.2.1 "
                           "is too old (the backend needs TensorRT >= 10, JetPack 6.1 or later "
                           "on Orin; ")
    assert "Jetson Nano and TX2 run on OpenVINO, see docs/tensorrt.md" in note
    assert "does not import" not in note  # pycuda is fine; only the version is wrong


def test_tensorrt_without_pycuda_is_not_a_working_runtime() -> None:
    report = on("jetson_orin", NO_PYCUDA)
    assert order(AUTO, report) == [("openvino", "CPU")]
    [note] = passed_over(AUTO, report)
    assert "pycuda does not import: libcuda.so.1: cannot open shared object file" in note
    assert "tensorrt does not import" not in note
    assert "too old" not in note


def test_no_nvidia_hardware_means_no_tensorrt_even_if_it_imports() -> None:
    assert order(AUTO, on("vm", TRT_OK)) == [("openvino", "CPU")]
    assert order(AUTO, on("intel_nuc", TRT_OK))[0] == ("openvino", "CPU")
    assert passed_over(AUTO, on("vm", NO_TRT)) == []


def test_intel_gpu_then_npu_then_cpu() -> None:
    report = on("intel_nuc", INTEL_ALL)
    assert order(AUTO, report) == [("openvino", "GPU"), ("openvino", "NPU"), ("openvino", "CPU")]
    reasons = [c.reason for c in candidates(AUTO, report)]
    assert reasons[0] == "auto: Intel GPU card0 (i915) listed by OpenVINO as GPU"
    assert reasons[1] == "auto: Intel NPU accel0 (intel_vpu) listed by OpenVINO as NPU"
    assert passed_over(AUTO, report) == []


def test_several_intel_gpus_are_tried_in_openvinos_order() -> None:
    runtimes = Runtimes(openvino="2024.6.0", openvino_devices=("CPU", "GPU.0", "GPU.1"))
    assert order(AUTO, on("intel_nuc", runtimes)) == [
        ("openvino", "GPU.0"), ("openvino", "GPU.1"), ("openvino", "CPU")
    ]


def test_intel_devices_that_openvino_does_not_list_are_reported() -> None:
    report = on("intel_nuc", NO_TRT)
    assert order(AUTO, report) == [("openvino", "CPU")]
    gpu, npu = passed_over(AUTO, report)
    assert gpu.startswith("openvino/GPU: Intel GPU card0 found but OpenVINO does not list GPU; "
                          "install the Intel GPU compute runtime")
    assert npu.startswith("openvino/NPU: Intel NPU accel0 found but OpenVINO does not list NPU; "
                          "install the Intel NPU driver")


def test_openvino_missing_is_named_and_cpu_is_still_the_last_resort() -> None:
    runtimes = Runtimes(errors={"openvino": "No module named 'openvino'"})
    report = on("intel_nuc", runtimes)
    assert order(AUTO, report) == [("openvino", "CPU")]
    assert "OpenVINO does not import: No module named 'openvino'" in passed_over(AUTO, report)[0]


def test_openvino_gpu_without_an_intel_gpu_in_sysfs_is_not_tried() -> None:
    assert order(AUTO, on("xeon_dgpu", INTEL_ALL)) == [("openvino", "CPU")]


def test_forced_backends_and_devices_are_the_only_candidate() -> None:
    report = on("xeon_dgpu", TRT_OK)
    assert order(AutoBackend(device="GPU"), report) == [("openvino", "GPU")]
    assert order(OpenVinoBackend(device="NPU"), report) == [("openvino", "NPU")]
    assert order(TensorRtBackend(type="tensorrt", device=1), on("vm", NO_TRT)) == [
        ("tensorrt", "1")
    ]
    assert all(forced(b) for b in (AutoBackend(device="CPU"), OpenVinoBackend(),
                                   TensorRtBackend(type="tensorrt")))
    assert not forced(AUTO)
    # Forced: nothing is "passed over", even on an Orin without tensorrt.
    assert passed_over(OpenVinoBackend(), on("jetson_orin", NO_TRT)) == []


# --- select_engine: real loading, real failures -----------------------------------------------


def config_for(samples: Path, tmp_path: Path, backend: BackendConfig = AUTO) -> AgentConfig:
    return AgentConfig(
        model={"path": samples / "models" / "yolox_nano.onnx"},
        cameras=[{"id": "cam", "type": "usb"}],
        backend=backend,
        state_dir=tmp_path / "state",
    )


def test_auto_on_a_plain_vm_is_cpu_and_not_degraded(samples: Path, tmp_path: Path) -> None:
    selection = select_engine(config_for(samples, tmp_path), on("vm", NO_TRT))
    try:
        assert (selection.engine.backend, selection.engine.device) == ("openvino", "CPU")
        assert selection.reason == "auto: OpenVINO on CPU, which is always there"
        assert (selection.fallbacks, selection.degraded) == ((), False)
    finally:
        selection.engine.close()


def test_falls_back_from_tensorrt_to_cpu_and_reports_it(
    samples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = on("jetson_orin", TRT_OK)  # the policy believes TensorRT works ...
    with caplog.at_level(logging.WARNING, logger="edge_agent.selection.loading"):
        selection = select_engine(config_for(samples, tmp_path), report)  # ... it does not here
    try:
        assert (selection.engine.backend, selection.engine.device) == ("openvino", "CPU")
        [fallback] = selection.fallbacks
        assert fallback.startswith("tensorrt: ")
        assert "tensorrt" in fallback[len("tensorrt: "):].lower()  # why, from the registry
        assert selection.degraded
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(w.startswith("tensorrt failed, trying the next backend: ") for w in warnings)
        assert any(w.startswith("running degraded on openvino/CPU: tensorrt: ") for w in warnings)
    finally:
        selection.engine.close()


def test_falls_back_from_intel_gpu_and_npu_to_cpu(samples: Path, tmp_path: Path) -> None:
    live = detect_runtimes().openvino_devices
    if any(name.startswith(("GPU", "NPU")) for name in live):
        pytest.skip(f"OpenVINO here has {live}: a GPU/NPU compile would not fail")
    selection = select_engine(config_for(samples, tmp_path), on("intel_nuc", INTEL_ALL))
    try:
        assert (selection.engine.backend, selection.engine.device) == ("openvino", "CPU")
        gpu, npu = selection.fallbacks
        assert gpu.startswith("openvino/GPU: cannot load model ")
        assert "GPU" in gpu[len("openvino/GPU: "):]
        assert npu.startswith("openvino/NPU: cannot load model ")
    finally:
        selection.engine.close()


def test_orin_without_tensorrt_runs_degraded_on_cpu(samples: Path, tmp_path: Path) -> None:
    selection = select_engine(config_for(samples, tmp_path), on("jetson_orin", NO_TRT))
    try:
        assert selection.engine.device == "CPU"
        [note] = selection.fallbacks
        assert note.startswith("tensorrt: NVIDIA GPU found (NVIDIA Jetson Orin NX")
    finally:
        selection.engine.close()


@pytest.fixture
def mismatched_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TensorRT 10 whose builder lacks a call the backend makes: AttributeError, not
    EngineError, as from a runtime release whose API moved."""
    fake_tensorrt.install(monkeypatch)
    monkeypatch.delattr(fake_tensorrt.Builder, "build_serialized_network")


@pytest.mark.usefixtures("mismatched_tensorrt")
def test_an_unexpected_backend_error_falls_back_under_auto(
    samples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_agent.selection.loading"):
        selection = select_engine(config_for(samples, tmp_path), on("jetson_orin", TRT_OK))
    try:
        assert (selection.engine.backend, selection.engine.device) == ("openvino", "CPU")
        assert selection.fallbacks == ("tensorrt: AttributeError: build_serialized_network",)
        [failed] = [r for r in caplog.records if r.getMessage().startswith("tensorrt failed")]
        assert failed.exc_info is not None
        assert failed.exc_info[0] is AttributeError
    finally:
        selection.engine.close()
    assert fake_tensorrt.STATE.pushes == fake_tensorrt.STATE.pops
    assert fake_tensorrt.STATE.retains == fake_tensorrt.STATE.detaches == 1


@pytest.mark.usefixtures("mismatched_tensorrt")
def test_an_unexpected_error_of_a_forced_backend_is_an_engine_error(
    samples: Path, tmp_path: Path
) -> None:
    config = config_for(samples, tmp_path, TensorRtBackend(type="tensorrt"))
    with pytest.raises(EngineError) as caught:
        select_engine(config, on("jetson_orin", TRT_OK))
    assert str(caught.value).startswith("tensorrt is set in the config and cannot load the "
                                        "model: AttributeError: build_serialized_network. ")
    assert isinstance(caught.value.__cause__, AttributeError)


def test_a_forced_device_that_fails_is_fatal(samples: Path, tmp_path: Path) -> None:
    if "GPU" in detect_runtimes().openvino_devices:
        pytest.skip("OpenVINO here has a GPU")
    config = config_for(samples, tmp_path, OpenVinoBackend(device="GPU"))
    with pytest.raises(EngineError) as caught:
        select_engine(config, on("intel_nuc", INTEL_ALL))
    message = str(caught.value)
    assert message.startswith("openvino/GPU is set in the config and cannot load the model: ")
    assert "A forced backend does not fall back; use 'backend: {type: auto}'" in message


def test_a_forced_tensorrt_that_does_not_load_is_fatal(samples: Path, tmp_path: Path) -> None:
    config = config_for(samples, tmp_path, TensorRtBackend(type="tensorrt"))
    with pytest.raises(EngineError, match=r"^tensorrt is set in the config and cannot load"):
        select_engine(config, on("xeon_dgpu", TRT_OK))


def test_a_model_no_backend_can_load_lists_every_attempt(tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07not a model")
    config = AgentConfig(model={"path": model}, cameras=[{"id": "cam", "type": "usb"}],
                         state_dir=tmp_path / "state")
    with pytest.raises(EngineError) as caught:
        select_engine(config, on("jetson_orin", TRT_OK))
    message = str(caught.value)
    assert message.startswith("no inference backend could load the model: tensorrt: ")
    assert f"; openvino/CPU: cannot load model {model}" in message


# --- the tensorrt config section --------------------------------------------------------------


def write_config(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text("model:\n  path: m.onnx\ncameras:\n  - id: a\n    type: usb\n" + backend)
    return path


def test_tensorrt_section_defaults_and_options(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "backend:\n  type: tensorrt\n"))
    backend = config.backend
    assert isinstance(backend, TensorRtBackend)
    assert tensorrt_options(backend, Path("/var/lib/edge-agent")) == {
        "device": 0,
        "precision": "auto",
        "cache_dir": Path("/var/lib/edge-agent/cache/tensorrt"),
        "workspace_mb": 1024,
        "int8_calibration_cache": None,
        "num_contexts": 2,
    }


def test_int8_needs_a_calibration_cache(tmp_path: Path) -> None:
    path = write_config(tmp_path, "backend:\n  type: tensorrt\n  precision: int8\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}:6: backend.int8_calibration_cache: required when precision is int8: the "
        "calibration cache TensorRT reads (see docs/tensorrt.md); or use precision fp16"
    ]
    config = load_config(write_config(
        tmp_path, "backend:\n  type: tensorrt\n  precision: int8\n"
        "  int8_calibration_cache: /etc/edge-agent/calib.cache\n"
    ))
    assert isinstance(config.backend, TensorRtBackend)
    assert config.backend.int8_calibration_cache == Path("/etc/edge-agent/calib.cache")


def test_tensorrt_precision_values_are_listed(tmp_path: Path) -> None:
    path = write_config(tmp_path, "backend:\n  type: tensorrt\n  precision: fp8\n")
    with pytest.raises(ConfigError, match=r"allowed: auto, fp16, fp32, int8"):
        load_config(path)
