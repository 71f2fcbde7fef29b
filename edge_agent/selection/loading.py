"""Turns the config's backend and model sections into a loaded engine, with the reason.

The order of backends comes from `edge_agent.selection.policy`; this module loads them and
records each failure, so a fallback is never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.camera_filter import class_id, unknown_class
from edge_agent.config.model import AgentConfig, BackendConfig, ModelConfig
from edge_agent.errors import ConfigError
from edge_agent.selection import policy
from edge_agent.selection.policy import Candidate
from edge_agent.selection.probe import HardwareReport
from engines import registry
from engines.base import Engine
from engines.detector import check_model
from engines.errors import EngineError, LabelsFileError, ModelFileError, ModelLoadError
from engines.input_shapes import ShapedEngines
from engines.model_info import read_labels
from engines.postprocess import DetectionFilter

log = logging.getLogger(__name__)


def model_options(model: ModelConfig) -> dict[str, Any]:
    """What every backend takes about the model itself."""
    return {
        "family": model.family,
        "class_names": read_labels(model.labels) if model.labels else None,
        "name": model.name,
    }


@dataclass(frozen=True)
class Selection:
    """The loaded engine, why it was chosen, and what was tried or skipped before it.

    A non-empty `fallbacks` means the box runs degraded ("tensorrt: <why>" ...): it is
    logged as a WARNING and published in the retained info message.
    """

    engine: Engine
    reason: str
    fallbacks: tuple[str, ...] = ()

    @property
    def degraded(self) -> bool:
        return bool(self.fallbacks)


def select_engine(
    config: AgentConfig, report: HardwareReport, config_file: Path | str | None = None
) -> Selection:
    """Load the model on the first candidate of the policy that works.

    With `backend: auto` a failing candidate (any exception, not only EngineError) is
    logged and the next one tried; a backend or device forced in the config is the only
    candidate, and its failure is fatal as an EngineError. A fault of the model itself
    (file missing, bad metadata, outputs that fit no postprocessing: found by one
    warm-up inference, engines.detector.check_model) is fatal at once, without the
    fallback hint: no other backend would do better.
    """
    backend = config.backend
    model = model_options(config.model)
    fallbacks = policy.passed_over(backend, report)
    for note in fallbacks:
        log.warning("not tried: %s", note)
    tried = policy.candidates(backend, report)
    for candidate in tried:
        options = _options(backend, candidate, config.state_dir)
        try:
            engine = registry.open_engine(candidate.backend, config.model.path, **model, **options)
            _checked(engine)
        except ModelFileError as exc:
            where = f"{config_file}: " if config_file else ""
            raise EngineError(
                f"{where}model.path: {exc.path}: {exc.cause} (the model file; check the "
                "path and that the agent's user can read it)"
            ) from exc
        except ModelLoadError as exc:
            if exc.any_backend:
                raise
            _fall_back_or_fail(backend, candidate, exc, fallbacks)
            continue
        except Exception as exc:  # a runtime mismatch raises anything; see below
            # EngineError is the expected failure; AttributeError, TypeError or RuntimeError
            # come from a runtime whose API differs from the one the backend was written
            # for. With `auto` both fall back: one odd runtime must not stop the boot.
            _fall_back_or_fail(backend, candidate, exc, fallbacks)
            continue
        if model["class_names"] is not None:
            _check_label_count(config.model, engine)
        engine.input_shapes = ShapedEngines(engine, config.model.input_size)
        if fallbacks:
            log.warning("running degraded on %s/%s: %s", engine.backend, engine.device,
                        " | ".join(fallbacks))
        return Selection(engine, candidate.reason, tuple(fallbacks))
    raise EngineError("no inference backend could load the model: " + "; ".join(fallbacks))


def _checked(engine: Engine) -> None:
    """The warm-up check; the engine is closed when the model is refused."""
    try:
        check_model(engine)
    except Exception:
        engine.close()
        raise


def _fall_back_or_fail(
    backend: BackendConfig, candidate: Candidate, exc: Exception, fallbacks: list[str]
) -> None:
    """A forced backend's failure is fatal; with auto it is noted and the next is tried."""
    label = candidate.label
    why = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    if policy.forced(backend):
        raise EngineError(
            f"{label} is set in the config and cannot load the model: {why}. A forced "
            "backend does not fall back; use 'backend: {type: auto}' to allow that"
        ) from exc
    fallbacks.append(f"{label}: {why}")
    if isinstance(exc, EngineError):
        log.warning("%s failed, trying the next backend: %s", label, why)
    else:
        log.warning("%s failed, trying the next backend: %s", label, why, exc_info=exc)


def model_class_count(family: str, output_shapes: tuple[tuple[int, ...], ...]) -> int | None:
    """Classes the model scores, where its output shape tells (see engines.postprocess).

    YOLOX and YOLOv5 rows are 5 + classes wide, Ultralytics has 4 + classes channels;
    end-to-end models output a class id and SSD counts a background class, so those
    do not reveal a count to check a labels file against.
    """
    if not output_shapes or len(output_shapes[0]) != 3:
        return None
    shape = output_shapes[0]
    if family in ("yolox", "yolov5"):
        return int(shape[2]) - 5
    if family == "ultralytics":
        return int(shape[1]) - 4
    return None


def _check_label_count(model: ModelConfig, engine: Engine) -> None:
    """Refuse a labels file that does not name every class: detections would carry
    numbers instead of names, or worse, the wrong names. Closes the engine on refusal."""
    info = engine.info
    classes = model_class_count(info.family, info.output_shapes)
    if classes is None or classes == len(info.class_names):
        return
    engine.close()
    raise LabelsFileError(
        str(model.labels),
        f"has {len(info.class_names)} names but the model has {classes} classes "
        f"({info.family} output {list(info.output_shapes[0])}); list one name per class, "
        "in class-id order",
    )


def _options(backend: BackendConfig, candidate: Candidate, state_dir: Path) -> dict[str, Any]:
    """The candidate's own backend settings as its engine's options, never another's.

    The config's section when it is this backend's type; else that backend's defaults,
    on the candidate's device where the policy chose one (`auto`).
    """
    declared = registry.get(candidate.backend)
    if isinstance(backend, declared.config):
        return declared.options(backend, state_dir)
    settings = declared.default_settings()
    if candidate.device is not None and "device" in declared.config.model_fields:
        settings = declared.config.model_validate(
            {**settings.model_dump(), "device": candidate.device}
        )
    return declared.options(settings, state_dir)


def detection_filter(model: ModelConfig, class_names: tuple[str, ...]) -> DetectionFilter:
    """Threshold settings, with the class allow-list turned into ids of this model."""
    class_ids = None
    if model.classes is not None:
        ids = []
        for wanted in model.classes:  # resolved as detect, masks and zones resolve them
            found = class_id(wanted, class_names)
            if found is None:
                raise ConfigError(f"model.classes: {unknown_class(wanted, class_names)}")
            ids.append(found)
        class_ids = np.array(sorted(set(ids)), dtype=np.int32)
    return DetectionFilter(
        score_threshold=model.score_threshold,
        iou_threshold=model.iou_threshold,
        max_detections=model.max_detections,
        class_ids=class_ids,
    )
