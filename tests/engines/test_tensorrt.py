"""TensorRT engine logic against a narrow fake of tensorrt/pycuda (tests/engines/fake_tensorrt.py).

The fake's execution runs the same ONNX in OpenVINO, so detections and output arrays are
compared with the real OpenVINO engine; the real GPU run is test_tensorrt_gpu.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov
import pytest

from engines import registry
from engines.engine_cache import (
    MAGIC,
    CachedEngine,
    CacheKey,
    EngineCache,
    atomic_write,
    split_ultralytics_header,
)
from engines.errors import BackendUnavailableError, EngineError, ModelLoadError
from engines.model_info import read_labels
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, anchor_count, postprocess
from engines.preprocess import prepare
from tests.engines import fake_tensorrt
from tests.engines.fake_tensorrt import FakeGpu
from tests.helpers import onnx_metadata_entry

OPTIONS = DetectionFilter(score_threshold=0.3)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    state = FakeGpu()
    fake_tensorrt.install(monkeypatch, state)
    return state


@pytest.fixture
def engine_class(gpu: FakeGpu) -> Any:
    return sys.modules["engines.tensorrt"].TensorRtEngine


@pytest.fixture
def onnx(samples: Path) -> Path:
    return samples / "models" / "yolox_nano.onnx"


@pytest.fixture
def labels(samples: Path) -> tuple[str, ...]:
    return read_labels(samples / "models" / "coco_labels.txt")


@pytest.fixture(scope="module")
def reference(samples: Path) -> Iterator[OpenVinoEngine]:
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx", precision="f32") as engine:
        yield engine


def detect(engine: Any, image: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    tensor, letterbox = prepare(image, engine.input)
    found = postprocess(engine.info.family, engine.infer(tensor).outputs, engine.input, OPTIONS,
                        letterbox, image.shape[1], image.shape[0])
    return found.class_ids.tolist(), found.boxes, found.scores


def entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


# --- the cache: key, atomic write, bad entries ----------------------------------------------

KEY = CacheKey("ab" * 32, "10.3.0", "Orin", "8.7", "fp16", (1, 3, 416, 416))


@pytest.mark.parametrize(
    ("component", "value"),
    [("model_sha256", "cd" * 32), ("tensorrt_version", "10.4.0"), ("gpu_name", "Xavier"),
     ("compute_capability", "7.2"), ("precision", "fp32"), ("input_shape", (1, 3, 640, 640)),
     ("calibration_sha256", "ef" * 32)],
)
def test_cache_key_changes_with_each_component(component: str, value: object) -> None:
    changed = dataclasses.replace(KEY, **{component: value})
    assert changed.digest() != KEY.digest()
    assert changed.file_name("m") != KEY.file_name("m")
    assert dataclasses.replace(KEY).file_name("m") == KEY.file_name("m")


def test_failed_write_leaves_no_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync fails after the bytes went into the temp file: nothing may be left behind."""
    target = tmp_path / "model.engine"

    def broken_fsync(fd: int) -> None:
        assert os.fstat(fd).st_size == 3 << 20  # the data really was written first
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"x" * (3 << 20))
    assert entries(tmp_path) == []


def test_failed_write_keeps_the_old_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    path = cache.write(KEY, "m", CachedEngine(b"old engine", ("output",)))
    assert path is not None
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert cache.write(KEY, "m", CachedEngine(b"new engine", ("output",))) is None
    assert "cannot write engine cache" in caplog.text
    assert entries(tmp_path) == [path]
    assert path.read_bytes() == before
    assert cache.read(KEY, "m") == CachedEngine(b"old engine", ("output",))


def test_cache_entry_round_trip_and_foreign_key(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "new")
    path = cache.write(KEY, "m", CachedEngine(b"\x00engine", ("a", "b")))
    assert path is not None
    assert path.read_bytes().startswith(MAGIC)
    assert cache.read(KEY, "m") == CachedEngine(b"\x00engine", ("a", "b"))
    other = dataclasses.replace(KEY, precision="fp32")
    path.rename(cache.path_for(other, "m"))  # an entry under the wrong name is not trusted
    assert cache.read(other, "m") is None


def _first_entry(folder: Path) -> tuple[Path, CacheKey, dict[str, Any]]:
    [path] = entries(folder)
    data = path.read_bytes()
    length = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
    header = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    key = CacheKey(**{**header["key"], "input_shape": tuple(header["key"]["input_shape"])})
    return path, key, header


@pytest.mark.parametrize("damage", ["garbage", "truncated", "rejected by TensorRT"])
def test_bad_cache_entry_is_rebuilt_with_a_warning(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, damage: str,
) -> None:
    cache_dir = tmp_path / "cache"
    engine_class(onnx, cache_dir=cache_dir).close()
    engine_class(onnx, cache_dir=cache_dir).close()
    assert len(gpu.builds) == 1, "the second start must load the cached engine"
    path, key, _ = _first_entry(cache_dir)
    if damage == "garbage":
        path.write_bytes(os.urandom(5000))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    else:
        EngineCache(cache_dir).write(key, onnx.stem, CachedEngine(b"not a plan", ("output",)))
    caplog.set_level(logging.WARNING)
    with engine_class(onnx, cache_dir=cache_dir) as engine:
        assert engine.info.family == "yolox"
    assert len(gpu.builds) == 2
    assert str(path) in caplog.text
    assert "rebuilding" in caplog.text
    engine_class(onnx, cache_dir=cache_dir).close()
    assert len(gpu.builds) == 2, "the rebuilt entry must be good again"
    assert [p.name for p in entries(cache_dir)] == [path.name]


def test_cache_key_follows_the_machine(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path
) -> None:
    """Another GPU or precision gets its own entry; the file names the precision."""
    engine_class(onnx, cache_dir=tmp_path).close()
    gpu.name = "Other GPU"
    engine_class(onnx, cache_dir=tmp_path).close()
    engine_class(onnx, cache_dir=tmp_path, precision="fp32").close()
    assert len(gpu.builds) == 3
    names = [p.name for p in entries(tmp_path)]
    assert len(names) == 3
    assert sum(".fp32." in name for name in names) == 1


# --- results: same detections and arrays as OpenVINO ----------------------------------------


def test_detections_match_openvino_on_every_sample_image(
    gpu: FakeGpu, engine_class: Any, onnx: Path, samples: Path, labels: tuple[str, ...],
    reference: OpenVinoEngine, tmp_path: Path,
) -> None:
    with engine_class(onnx, class_names=labels, cache_dir=tmp_path) as engine:
        assert engine.backend == "tensorrt"
        assert engine.device == "cuda:0 (Fake Orin)"
        assert engine.info.family == "yolox"
        assert engine.info.class_names == labels
        assert engine.info.output_shapes == ((1, 3549, 85),)
        assert engine.info.sha256 == reference.info.sha256
        assert (engine.input.height, engine.input.width, engine.input.layout) == (416, 416, "NCHW")
        assert (engine.input.dtype, engine.input.color, engine.input.scale) == ("float32", "BGR", 1)
        images = sorted((samples / "images").glob("*.jpg"))
        assert len(images) >= 8
        for image_path in images:
            image = cv2.imread(str(image_path))
            ids, boxes, scores = detect(engine, image)
            want_ids, want_boxes, want_scores = detect(reference, image)
            assert ids == want_ids, image_path.name
            np.testing.assert_allclose(boxes, want_boxes, atol=0.5)
            np.testing.assert_allclose(scores, want_scores, atol=1e-3)
    assert gpu.executions == len(images)


def test_outputs_come_back_in_model_order(
    gpu: FakeGpu, engine_class: Any, onnx: Path, samples: Path
) -> None:
    """Three outputs, listed by the engine in another order, return in the ONNX order."""
    gpu.extra_outputs = ("1175", "1150")
    model = ov.Core().read_model(str(onnx))
    model.add_outputs(["1175", "1150"])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    with engine_class(onnx) as engine:
        assert engine.info.output_shapes == ((1, 3549, 85), (1, 85, 3549), (1, 85, 13, 13))
        tensor, _ = prepare(cv2.imread(str(samples / "images" / "pets.jpg")), engine.input)
        result = engine.infer(tensor)
    want = compiled.create_infer_request().infer({0: tensor})
    assert [o.shape for o in result.outputs] == [tuple(o.shape) for o in want.to_tuple()]
    for got, expected in zip(result.outputs, want.to_tuple(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert result.latency_ms > 0


def test_parallel_submits_keep_their_own_results(
    gpu: FakeGpu, engine_class: Any, onnx: Path, samples: Path
) -> None:
    with engine_class(onnx, num_contexts=3) as engine:
        assert engine.parallelism == 3
        images = sorted((samples / "images").glob("*.jpg"))
        tensors = [prepare(cv2.imread(str(p)), engine.input)[0] for p in images]
        alone = [engine.infer(t).outputs[0] for t in tensors]
        futures = [engine.submit(t) for t in tensors * 2]
        together = [f.result(timeout=60).outputs[0] for f in futures]
    for got, expected in zip(together, alone * 2, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_cuda_contexts_and_memory_released(gpu: FakeGpu, engine_class: Any, onnx: Path) -> None:
    """Every push has its pop, every buffer is freed; close twice and submit after close."""
    engine = engine_class(onnx, num_contexts=2)
    tensor = np.zeros(engine.input.shape, np.float32)
    engine.infer(tensor)
    with pytest.raises(ValueError, match=r"expected an input shaped \(1, 3, 416, 416\)"):
        engine.submit(np.zeros((1, 3, 320, 320), np.float32))
    assert len(gpu.memory) == 4  # input + output buffer per context
    assert (gpu.retains, gpu.detaches) == (1, 0)  # held while the engine is open
    engine.close()
    engine.close()
    assert gpu.memory == {}
    assert gpu.pushes == gpu.pops > 0
    assert gpu.retains == gpu.detaches == 1
    with pytest.raises(EngineError, match="engine is closed"):
        engine.submit(tensor)


def test_a_failed_load_releases_the_primary_context(
    gpu: FakeGpu, engine_class: Any, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.plan"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError):
        engine_class(garbage)
    assert gpu.retains == gpu.detaches == 1
    assert gpu.pushes == gpu.pops


@pytest.mark.parametrize("failure", ["data-dependent output", "second mem_alloc"])
def test_a_slot_that_fails_part_way_frees_what_it_allocated(
    gpu: FakeGpu, engine_class: Any, onnx: Path, monkeypatch: pytest.MonkeyPatch, failure: str,
) -> None:
    """The input buffer exists when an output fails: it must not leak, nor the context."""
    driver = sys.modules["pycuda.driver"]
    allocated: list[int] = []
    if failure == "data-dependent output":
        monkeypatch.setattr(fake_tensorrt.FakeExecutionContext, "get_tensor_shape",
                            lambda self, name: (1, -1, 85))
        expected = r"output output has a data-dependent shape \(1, -1, 85\)"
    else:
        real_alloc = driver.mem_alloc

        def alloc_once(size: int) -> Any:
            if allocated:
                raise fake_tensorrt.CudaError("cuMemAlloc failed: out of memory")
            allocation = real_alloc(size)
            allocated.append(int(allocation))
            return allocation

        monkeypatch.setattr(driver, "mem_alloc", alloc_once)
        expected = "cuMemAlloc failed: out of memory"
    with pytest.raises((EngineError, fake_tensorrt.CudaError), match=expected):
        engine_class(onnx, num_contexts=1)
    if failure == "second mem_alloc":
        assert len(allocated) == 1  # the input buffer really was allocated first
    assert gpu.memory == {}
    assert gpu.pushes == gpu.pops
    assert gpu.retains == gpu.detaches == 1


def test_raw_throughput_counts_real_runs(gpu: FakeGpu, engine_class: Any, onnx: Path) -> None:
    with engine_class(onnx) as engine:
        rate = engine.raw_throughput(0.5)
    assert rate > 0
    assert gpu.executions >= int(rate * 0.5) * 0.9


# --- precision -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fast", "capability", "flags"),
    [(True, (8, 7), ["FP16"]), (False, (6, 1), []),
     (None, (5, 3), ["FP16"]), (None, (6, 1), [])],
    ids=["fast-fp16", "no-fast-fp16", "nano-by-capability", "pascal-by-capability"],
)
def test_fp16_only_where_the_gpu_is_fast_at_it(
    gpu: FakeGpu, engine_class: Any, onnx: Path, fast: bool | None,
    capability: tuple[int, int], flags: list[str],
) -> None:
    gpu.fast_fp16, gpu.capability = fast, capability
    engine_class(onnx, precision="auto", workspace_mb=256).close()
    engine_class(onnx, precision="fp32").close()
    assert gpu.builds[0]["flags"] == flags
    assert gpu.builds[0]["workspace"] == 256 << 20
    assert gpu.builds[1]["flags"] == []


def test_int8_needs_a_calibration_cache(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path
) -> None:
    with pytest.raises(EngineError, match="precision int8 needs int8_calibration_cache"):
        engine_class(onnx, precision="int8")
    missing = tmp_path / "calib.cache"
    with pytest.raises(EngineError, match=r"int8_calibration_cache .*calib\.cache: cannot read"):
        engine_class(onnx, precision="int8", int8_calibration_cache=missing)
    missing.write_bytes(b"TRT-1003-EntropyCalibration2\nimages: 3c010a14\n")
    engine_class(onnx, precision="int8", int8_calibration_cache=missing).close()
    assert gpu.builds[-1]["flags"] == ["FP16", "INT8"]
    assert bytes.fromhex(gpu.builds[-1]["calibration"]) == missing.read_bytes()
    assert gpu.memory == {}
    assert gpu.pushes == gpu.pops


def test_bad_arguments_are_named(engine_class: Any, onnx: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of auto, fp16, fp32, int8"):
        engine_class(onnx, precision="bf16")
    with pytest.raises(ValueError, match="unknown model family 'yolo9'"):
        engine_class(onnx, family="yolo9")


# --- prebuilt engines ------------------------------------------------------------------------


def _ultralytics_header(metadata: dict[str, Any]) -> bytes:
    data = json.dumps(metadata).encode()
    return len(data).to_bytes(4, "little") + data


@pytest.mark.parametrize("header", [True, False], ids=["ultralytics-header", "bare-plan"])
def test_prebuilt_engine(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path, samples: Path,
    labels: tuple[str, ...], reference: OpenVinoEngine, header: bool,
) -> None:
    plan = fake_tensorrt.plan_bytes(onnx)
    model = tmp_path / "yolox.engine"
    metadata = {"names": {str(i): f"n{i}" for i in range(80)}, "imgsz": [416, 416], "batch": 1}
    model.write_bytes((_ultralytics_header(metadata) if header else b"") + plan)
    with engine_class(model) as engine:
        expected = tuple(f"n{i}" for i in range(80)) if header else ()
        assert engine.info.class_names == expected  # "10" sorts after "9"
        assert engine.info.family == "yolox"
        image = cv2.imread(str(samples / "images" / "pets.jpg"))
        assert detect(engine, image)[0] == detect(reference, image)[0]
    assert gpu.builds == []
    with engine_class(model, class_names=labels) as engine:
        assert engine.info.class_names == labels


def test_ultralytics_header_split() -> None:
    body = b"\x01\x02ftrt-engine"
    meta, rest = split_ultralytics_header(_ultralytics_header({"names": ["a", "b"]}) + body)
    assert (meta, rest) == ({"names": "['a', 'b']"}, body)
    assert split_ultralytics_header(body) == ({}, body)
    assert split_ultralytics_header(b"\xff\xff\x00\x00" + b"\x80" * 70000)[0] == {}


def test_unloadable_prebuilt_engines(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.plan"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match=r"garbage\.plan: TensorRT 10\.3\.0 cannot"):
        engine_class(garbage)
    other = tmp_path / "old.engine"
    other.write_bytes(fake_tensorrt.plan_bytes(onnx, version="8.6.1"))
    with pytest.raises(ModelLoadError, match=r"old\.engine.*serialized with TensorRT 8\.6\.1"):
        engine_class(other)
    assert gpu.pushes == gpu.pops


# --- dynamic shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("imgsz", "size"), [(b"[320, 320]", 320), (None, 640)])
def test_dynamic_input_gets_a_profile_and_a_shape(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path, samples: Path,
    imgsz: bytes | None, size: int,
) -> None:
    gpu.dynamic_input = True
    model = tmp_path / "dynamic.onnx"
    model.write_bytes(onnx.read_bytes() + (onnx_metadata_entry(b"imgsz", imgsz) if imgsz else b""))
    with engine_class(model, num_contexts=2) as engine:
        shape = (1, 3, size, size)
        assert gpu.profiles == [("images", shape, shape, shape)]
        assert gpu.builds[0]["profile"] == (shape, shape, shape)
        assert gpu.input_shapes_set == [shape, shape]
        assert engine.input.shape == shape
        assert engine.info.output_shapes == ((1, anchor_count(size, size), 85),)
        image = cv2.imread(str(samples / "images" / "pets.jpg"))
        assert detect(engine, image)[0].count(16) == 2  # the two dogs


@pytest.mark.parametrize(("imgsz", "size"), [(512, 512), (1024, 416)], ids=["in", "outside"])
def test_prebuilt_dynamic_engine_uses_its_profile(
    gpu: FakeGpu, engine_class: Any, onnx: Path, tmp_path: Path, imgsz: int, size: int
) -> None:
    profile = [[1, 3, 256, 256], [1, 3, 416, 416], [1, 3, 640, 640]]
    plan = fake_tensorrt.plan_bytes(onnx, dims=(1, 3, -1, -1), profile=profile)
    model = tmp_path / "dynamic.engine"
    model.write_bytes(_ultralytics_header({"imgsz": [imgsz, imgsz]}) + plan)
    with engine_class(model) as engine:
        assert engine.input.shape == (1, 3, size, size)
        assert gpu.input_shapes_set[-1] == (1, 3, size, size)
        assert engine.info.output_shapes == ((1, anchor_count(size, size), 85),)


# --- failures: runtime, device, model ------------------------------------------------------------


@pytest.mark.parametrize("missing", ["tensorrt", "pycuda.driver"])
def test_missing_runtime_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    fake_tensorrt.install(monkeypatch)
    monkeypatch.setitem(sys.modules, missing, None)  # what an absent package looks like
    with pytest.raises(BackendUnavailableError) as caught:
        fake_tensorrt.fresh_import(monkeypatch)
    text = str(caught.value)
    assert "python3-libnvinfer" in text
    assert "pip install pycuda" in text
    assert "docs/tensorrt.md" in text
    with pytest.raises(BackendUnavailableError, match="TensorRT or pycuda does not import"):
        registry.backend_class("tensorrt")


def test_tensorrt_8_is_refused_with_what_to_use_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Jetson Nano's TensorRT 8 imports, but lacks the API this backend calls."""
    with pytest.raises(BackendUnavailableError) as caught:
        fake_tensorrt.install(monkeypatch, FakeGpu(trt_version="8.6.1"))
    assert str(caught.value) == (
        "TensorRT 8.6.1 found; this backend needs TensorRT >= 10 (JetPack 6.1 or later on "
        "Orin); older boards (Jetson Nano, TX2) use OpenVINO, see docs/tensorrt.md"
    )
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.1 found; .* >= 10"):
        registry.backend_class("tensorrt")


def test_registry_lists_tensorrt_first_for_auto() -> None:
    assert registry.BACKENDS["tensorrt"] == "engines.tensorrt:TensorRtEngine"
    assert registry.AUTO_ORDER == ("tensorrt", "openvino", "onnxruntime")


def test_no_usable_gpu(gpu: FakeGpu, engine_class: Any, onnx: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="CUDA device 1 does not exist: found 1"):
        engine_class(onnx, device=1)
    gpu.driver_ok = False
    with pytest.raises(BackendUnavailableError, match="no CUDA-capable device"):
        engine_class(onnx)


def test_bad_model_files_are_named(engine_class: Any, onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nowhere\.onnx: file not found"):
        engine_class(tmp_path / "nowhere.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx: not a readable ONNX file"):
        engine_class(cut)
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    with pytest.raises(ModelLoadError, match=r"model\.xml: TensorRT runs \.onnx, \.engine"):
        engine_class(xml)


def test_engine_module_needs_no_edge_agent() -> None:
    """engines/ imports nothing from edge_agent (house rule), checked on the source."""
    for name in ("tensorrt.py", "tensorrt_runtime.py", "engine_cache.py"):
        source = (Path(registry.__file__).parent / name).read_text()
        assert "edge_agent" not in source
