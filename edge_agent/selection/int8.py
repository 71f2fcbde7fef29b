"""`backend.precision: int8` at start, and the frames `edge-agent quantize` calibrates on.

The FP model is loaded first, as for any start (selection/loading.py). Then: a cached
build that passed the guard is loaded instead; a refused one leaves FP running with the
reason; with none, one is built now from the first frames of the cameras, and the
agent waits for it (see docs/int8.md for why it waits instead of running FP meanwhile).
Whatever happens, `Int8Status` says so in the log and the retained `info` message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.camera import open_capture
from edge_agent.config.model import AgentConfig, CameraConfig
from edge_agent.errors import AgentError
from edge_agent.selection.loading import Selection, detection_filter, model_options
from engines import registry
from engines.base import Engine
from engines.detector import Detector, check_model
from engines.errors import EngineError
from engines.input_shapes import ShapedEngines
from engines.int8_cache import MODEL, BuildRecord, Calibration, build_dir, read_record

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FRAME_TIMEOUT_S = 120.0
"""The most a camera may take to give its share of calibration frames."""
Keepalive = Callable[[str], None]
"""Told what the build is doing; the agent passes it on to systemd (STATUS, timeout)."""


@dataclass(frozen=True)
class Int8Status:
    """What became of `precision: int8`: published in `info` as `int8`."""

    running: bool
    """True: the INT8 build runs; False: the FP model does."""
    reason: str
    build: str | None = None
    f1: float | None = None
    min_f1: float | None = None
    model_sha256: str = ""
    """The FP model file's hash (the engine's is the INT8 IR's when it runs)."""

    def as_info(self) -> dict[str, object]:
        return {"running": self.running, "reason": self.reason, "build": self.build,
                "f1": self.f1, "min_f1": self.min_f1}


def calibration_of(settings: object) -> Calibration:
    """The cache-key settings of an OpenVINO backend section."""
    return Calibration(frames=int(settings.int8_calibration_frames),  # type: ignore[attr-defined]
                       preset=str(settings.int8_preset))  # type: ignore[attr-defined]


def wants_int8(config: AgentConfig) -> bool:
    return getattr(config.backend, "type", "") == "openvino" and \
        getattr(config.backend, "precision", "") == "int8"


def camera_frames(cameras: Sequence[CameraConfig], count: int,
                  timeout_s: float = FRAME_TIMEOUT_S) -> list[np.ndarray]:
    """The first `count` frames, shared out over the enabled cameras in config order, as
    HxWx3 uint8 BGR. Raises AgentError when no camera gives any."""
    enabled = [camera for camera in cameras if camera.enabled]
    if not enabled:
        raise AgentError("INT8 calibration needs frames: no camera is enabled (use "
                         "edge-agent quantize --images DIR)")
    share, frames = -(-count // len(enabled)), []
    for camera in enabled:
        frames += _read_frames(camera, min(share, count - len(frames)), timeout_s)
    if not frames:
        raise AgentError("INT8 calibration: no camera gave a frame")
    return frames


def _read_frames(camera: CameraConfig, count: int, timeout_s: float) -> list[np.ndarray]:
    capture = open_capture(camera)
    frames: list[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(frames) < count and time.monotonic() < deadline:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    log.info("INT8 calibration: %d frames from camera %s", len(frames), camera.id)
    return frames


def image_frames(folder: Path) -> list[np.ndarray]:
    """Every image in `folder` (sorted by name) as BGR; AgentError when there is none."""
    if not Path(folder).is_dir():
        raise AgentError(f"{folder}: not a folder of calibration images")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    frames = [image for image in (cv2.imread(str(p)) for p in paths) if image is not None]
    if not frames:
        raise AgentError(f"{folder}: no readable image ({', '.join(IMAGE_SUFFIXES)})")
    return frames


def split(frames: Sequence[np.ndarray], calibration: int,
          check: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration frames, held-back frames): the held-back ones are the LAST `check`
    frames, never neighbours of calibration frames drawn from between them (consecutive
    video frames are near copies, which would flatter the score). With too few frames,
    the check gets a quarter (at least one) and calibration the rest."""
    frames = list(frames)
    if len(frames) < 2:
        raise AgentError(f"INT8 needs at least 2 frames (calibration and check), got "
                         f"{len(frames)}")
    enough = len(frames) >= calibration + check
    held = check if enough else max(1, min(check, len(frames) // 4))
    rest = frames[: len(frames) - held]
    return rest[:calibration], frames[len(frames) - held:]


def open_int8(config: AgentConfig, path: Path, *, shaped: bool = True) -> Detector:
    """The INT8 IR on the config's OpenVINO settings, checked like any model at load.

    `shaped`: with the config's rectangular input (model.input_size), as the FP model
    runs; the guard opens it without, so both models are judged on the square input.
    """
    declared = registry.get("openvino")
    stem = Path(config.model.path).stem
    options = {**model_options(config.model), "name": config.model.name or f"{stem}-int8",
               **declared.options(config.backend, config.state_dir)}
    engine = registry.open_engine("openvino", path, **options)
    try:
        check_model(engine)
        # Rectangular input as for the FP model (selection.loading): without it every
        # camera ran the INT8 build square, 1.3-1.6x the work on a 4:3 or 16:9 camera.
        if shaped:
            engine.input_shapes = ShapedEngines(engine, config.model.input_size)
    except Exception:
        engine.close()
        raise
    return Detector(engine, detection_filter(config.model, engine.info.class_names))


def build_now(config: AgentConfig, reference: Engine, frames: Sequence[np.ndarray],
              source: str, folder: Path) -> BuildRecord:
    """Quantize and judge; the verdict is written into `folder` either way."""
    from engines.int8 import build

    settings = config.backend
    calibration = calibration_of(settings)
    calibrate, check = split(frames, calibration.frames,
                             settings.int8_check_frames)  # type: ignore[union-attr]
    fp = Detector(reference, detection_filter(config.model, reference.info.class_names))
    # The guard judges quantization alone: both models on their square input, never a
    # rectangular shape that one of them has compiled by then and the other not.
    shapes, reference.input_shapes = reference.input_shapes, None
    try:
        return build(
            model_path=Path(reference.info.path), model_sha256=reference.info.sha256,
            family=reference.info.family, folder=folder, calibration_frames=calibrate,
            check_frames=check, calibration=calibration,
            min_f1=settings.int8_min_f1, reference=fp,  # type: ignore[union-attr]
            open_int8=lambda path: open_int8(config, path, shaped=False), source=source,
        )
    finally:
        reference.input_shapes = shapes


def apply_int8(config: AgentConfig, selection: Selection,
               keepalive: Keepalive | None = None) -> tuple[Selection, Int8Status | None]:
    """The selection to run with: the INT8 build when the guard passed it, else the FP
    one unchanged. (selection, None) when the config does not ask for INT8."""
    if not wants_int8(config):
        return selection, None
    settings, fp = config.backend, selection.engine
    min_f1 = float(settings.int8_min_f1)  # type: ignore[union-attr]
    folder = build_dir(config.state_dir, calibration_of(settings).key(fp.info.sha256))
    record = read_record(folder)
    if record is None:
        try:
            record = _build_at_start(config, fp, folder, keepalive)
        except Exception as exc:  # whatever fails, the FP model is loaded and runs
            if not isinstance(exc, AgentError | EngineError | OSError):
                log.exception("INT8 build failed unexpectedly")
            why = str(exc) if isinstance(exc, AgentError | EngineError) else \
                f"{type(exc).__name__}: {exc}"
            return selection, _stay_fp(f"INT8 build failed: {why}", folder, None, min_f1)
    passed, reason = record.judged(min_f1)
    if not passed:
        return selection, _stay_fp(f"INT8 build refused: {reason}", folder, record, min_f1)
    try:
        int8 = open_int8(config, folder / MODEL).engine
    except Exception as exc:  # a build that does not load is refused like a bad one
        return selection, _stay_fp(f"INT8 build does not load: {exc}", folder, record, min_f1)
    fp.close()
    log.info("INT8 build %s in use: %s", folder, reason)
    status = Int8Status(True, f"INT8 build passed: {reason}", str(folder),
                        round(record.score.f1, 4), min_f1, fp.info.sha256)
    return Selection(int8, f"{selection.reason}; INT8 build {folder.name}",
                     selection.fallbacks), status


def _build_at_start(config: AgentConfig, fp: Engine, folder: Path,
                    keepalive: Keepalive | None) -> BuildRecord:
    settings = config.backend
    wanted = settings.int8_calibration_frames + settings.int8_check_frames  # type: ignore[union-attr]
    log.info("INT8: no build for this model and settings in %s; building one now from "
             "the first %d frames of the cameras (the agent starts when it is done)",
             folder, wanted)
    if keepalive:
        keepalive("INT8: reading calibration frames")
    frames = camera_frames(config.cameras, wanted)
    if keepalive:
        keepalive(f"INT8: quantizing on {len(frames)} frames")
    ids = ", ".join(camera.id for camera in config.cameras if camera.enabled)
    return build_now(config, fp, frames, f"cameras {ids}", folder)


def _stay_fp(reason: str, folder: Path, record: BuildRecord | None,
             min_f1: float) -> Int8Status:
    log.warning("%s; running the FP model (build folder %s)", reason, folder)
    return Int8Status(False, reason, str(folder),
                      round(record.score.f1, 4) if record else None, min_f1)
