"""Build an INT8 model on the box with NNCF post-training quantization, and guard it.

`build` quantizes an FP32/FP16 ONNX or IR model on calibration frames, runs the FP and
the INT8 model on frames held back from calibration, scores the INT8 detections against
the FP ones (engines/int8_guard.py) and records the verdict next to the build
(engines/int8_cache.py). Frames come from the caller (cameras, a folder of images): no
camera code here. OpenVINO reads the result like any IR.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engines.base import Detections, InputSpec
from engines.detector import Detector
from engines.errors import BackendUnavailableError, EngineError
from engines.int8_cache import MODEL, BuildRecord, Calibration, now, write_record
from engines.int8_guard import MIN_REFERENCE, GuardScore, score, verdict
from engines.model_info import sidecar_metadata
from engines.postprocess import FAMILIES

log = logging.getLogger(__name__)

NNCF_HINT = "pip install 'edge-agent[int8]' (NNCF, the quantizer OpenVINO ships for this)"


def _nncf():  # type: ignore[no-untyped-def]
    try:
        import nncf
    except ImportError as exc:
        raise BackendUnavailableError(f"INT8 needs NNCF, which does not import ({exc}); "
                                      f"{NNCF_HINT}") from exc
    # Its INFO lines (ignored nodes, quantizers not added) go to stdout; ours say what runs.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def calibration_spec(model: object, path: Path, family: str) -> InputSpec:
    """The input of the model as stored (float NCHW for most), which NNCF calibrates; the
    engine's own spec may be uint8 NHWC after it moved conversion into the model."""
    from engines.openvino import _input_geometry, rt_metadata

    metadata = {**sidecar_metadata(path), **rt_metadata(model)}  # type: ignore[arg-type]
    name, layout, height, width, dtype = _input_geometry(model, metadata, path)  # type: ignore[arg-type]
    return FAMILIES[family].input_spec(name, height, width, layout, dtype)


HEAD_STOP = frozenset({"Convolution", "GroupConvolution", "MatMul", "Parameter", "Constant"})


def decode_head(model: object) -> list[str]:
    """Names of the ops between the last convolutions and the outputs: the decode head
    (sigmoid, grid offsets, exp, strides, concat). Boxes in pixels (0..640) and scores
    (0..1) share its tensors, where one INT8 scale for both would crush the scores; it
    is left out as NNCF's YOLO examples do (on YOLOX-nano NNCF left it alone anyway)."""
    results = model.get_results()  # type: ignore[attr-defined]
    stack = [result.input_value(0).get_node() for result in results]
    names: set[str] = set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if node.get_type_name() in HEAD_STOP or name in names:
            continue
        names.add(name)
        stack.extend(port.get_source_output().get_node() for port in node.inputs())
    return sorted(names)


def source_model(path: Path) -> object:
    """The FP model as the CPU plugin will run it, which is what NNCF must quantize.

    ONNX spells activations as several ops (SiLU as Sigmoid * x, HSwish, GELU, Mish).
    Read raw, NNCF sees a Multiply with two activation inputs and quantizes both:
    FakeQuantize then sits inside every activation, the plugin cannot fuse it into the
    convolution, and on the sample YOLOX-nano the INT8 build ran at 0.70x the FP model
    instead of ~1x (bf16 on AMX) or 1.3x (f32). OpenVINO's offline fusions (the "MOC"
    pass `ov.convert_model` runs) join them into one op first; applied to the read
    model, ONNX or IR alike. Not through `ov.convert_model` itself: it sets the root
    logger to ERROR while it runs (and leaves it so when it fails), which would silence
    the running agent's warnings during a reload's build. Returns an openvino.Model;
    raises EngineError naming the file when it is not a readable model.
    """
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO's errors carry a C++ location first
        from engines.openvino import _first_line

        raise EngineError(f"cannot read {path} for quantizing: "
                          f"{_first_line(exc, type(exc).__name__)[:200]}") from exc
    try:
        from openvino._offline_transformations import apply_moc_transformations
    except ImportError:  # a later OpenVINO may move it: slower INT8, not a failure
        log.warning("INT8: OpenVINO's graph fusions are not importable here; %s is "
                    "quantized as read and may run slower than FP", path)
        return model
    apply_moc_transformations(model, cf=False)
    return model


def quantize(
    model_path: Path, frames: Sequence[np.ndarray], family: str, out_xml: Path,
    calibration: Calibration,
) -> None:
    """Write an INT8 IR of `model_path` to `out_xml` (+ .bin), calibrated on `frames`
    (HxWx3 uint8 BGR, letterboxed here as the agent does). Raises EngineError when
    NNCF fails (the message says why) and BackendUnavailableError without NNCF."""
    nncf = _nncf()
    import openvino as ov

    from engines.preprocess import prepare

    if not frames:
        raise EngineError("INT8 calibration needs at least one frame")
    model = source_model(Path(model_path))
    spec = calibration_spec(model, Path(model_path), family)
    tensors = [prepare(frame, spec)[0] for frame in frames]
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
              "mixed": nncf.QuantizationPreset.MIXED}[calibration.preset]
    try:  # NNCF draws progress bars on stdout, which is a tool's output (--json)
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model, nncf.Dataset(tensors), preset=preset, subset_size=len(tensors),
                fast_bias_correction=calibration.fast,
                ignored_scope=nncf.IgnoredScope(names=decode_head(model), validate=False),
            )
    except Exception as exc:  # NNCF raises its own and runtime errors alike
        raise EngineError(f"NNCF could not quantize {model_path}: {type(exc).__name__}: "
                          f"{exc}") from exc
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)


def detect_all(detector: Detector, frames: Sequence[np.ndarray],
               detection_filter: object | None = None) -> list[Detections]:
    """Each frame's detections (frame pixels); a frame with no finite output counts as
    finding nothing, which is what the guard should hold against the model."""
    found = []
    pending = [detector.submit(frame, detection_filter) for frame in frames[:1]]
    for index in range(len(frames)):
        if index + 1 < len(frames):  # one ahead, so requests overlap a little
            pending.append(detector.submit(frames[index + 1], detection_filter))
        result = pending.pop(0).result()
        found.append(result.detections if result.detections is not None
                     else Detections.empty())
    return found


def compare(reference: Detector, candidate: Detector, frames: Sequence[np.ndarray],
            reference_found: Sequence[Detections] | None = None) -> GuardScore:
    """Score `candidate` (INT8) against `reference` (FP) on the same frames, with the
    reference's filter for both; works for any two engines (OpenVINO, TensorRT, ORT)."""
    fp = list(reference_found) if reference_found is not None else detect_all(reference, frames)
    int8 = detect_all(candidate, frames, reference.filter)
    return score(zip(fp, int8, strict=True))


def build(
    *, model_path: Path, model_sha256: str, family: str, folder: Path,
    calibration_frames: Sequence[np.ndarray], check_frames: Sequence[np.ndarray],
    calibration: Calibration, min_f1: float, reference: Detector,
    open_int8: Callable[[Path], Detector], source: str,
) -> BuildRecord:
    """Quantize, load the INT8 model with `open_int8`, score it against `reference` (the
    FP detector) on `check_frames`, and write the verdict into `folder`. A refused build
    is written too (for inspection); the caller decides what to load from the record.
    Held-back frames on which the FP model finds too little to judge are refused before
    quantizing (no model is written then)."""
    started = time.perf_counter()
    fp_found = detect_all(reference, check_frames)
    if sum(len(found) for found in fp_found) < MIN_REFERENCE:  # minutes of NNCF for nothing
        result = score((found, Detections.empty()) for found in fp_found)
        return _record(folder, result, min_f1, started, model_path=model_path,
                       model_sha256=model_sha256, calibration=calibration, source=source)
    log.info("INT8: quantizing %s with NNCF on %d calibration frames (%s preset, fast %s); "
             "this takes a while on a small CPU", model_path, len(calibration_frames),
             calibration.preset, calibration.fast)
    quantize(model_path, calibration_frames, family, folder / MODEL, calibration)
    log.info("INT8: quantized in %.0f s; checking against the FP model on %d held-back "
             "frames", time.perf_counter() - started, len(check_frames))
    with open_int8(folder / MODEL) as int8:
        result = compare(reference, int8, check_frames, fp_found)
    return _record(folder, result, min_f1, started, model_path=model_path,
                   model_sha256=model_sha256, calibration=calibration, source=source)


def _record(folder: Path, result: GuardScore, min_f1: float, started: float, *,
            model_path: Path, model_sha256: str, calibration: Calibration,
            source: str) -> BuildRecord:
    """Judge, write the verdict next to the build, log it."""
    passed, reason = verdict(result, min_f1)
    record = BuildRecord(
        model_sha256=model_sha256, model_path=str(model_path), calibration=calibration,
        score=result, min_f1=min_f1, passed=passed, reason=reason, source=source,
        created_at=now(), build_s=round(time.perf_counter() - started, 1),
    )
    write_record(folder, record)
    log.log(logging.INFO if passed else logging.WARNING, "INT8 build %s %s: %s", folder,
            "passed" if passed else "REFUSED (kept for inspection, not used)", reason)
    return record
