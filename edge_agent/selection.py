"""Turns the config's backend and model sections into a loaded engine, with the reason."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.config_model import AgentConfig, ModelConfig, OpenVinoBackend
from edge_agent.errors import ConfigError
from engines import registry
from engines.base import Engine
from engines.decoders import DecodeOptions
from engines.errors import BackendUnavailableError, EngineError
from engines.model_info import read_labels

log = logging.getLogger(__name__)


def model_options(model: ModelConfig) -> dict[str, Any]:
    """What every backend takes about the model itself."""
    return {
        "family": model.family,
        "class_names": read_labels(model.labels) if model.labels else None,
        "name": model.name,
    }


def openvino_options(backend: OpenVinoBackend, state_dir: Path) -> dict[str, Any]:
    return {
        "device": backend.device,
        "precision": backend.precision,
        "performance_hint": backend.performance_hint,
        "num_requests": backend.num_requests,
        "cache_dir": backend.cache_dir or state_dir / "cache" / "openvino",
        "host_convert": backend.input_conversion == "host",
    }


def open_configured_engine(config: AgentConfig) -> tuple[Engine, str]:
    """Load the model on the configured backend; `auto` tries backends in registry order."""
    model = model_options(config.model)
    backend = config.backend
    if isinstance(backend, OpenVinoBackend):
        options = openvino_options(backend, config.state_dir)
        engine = registry.open_engine("openvino", config.model.path, **model, **options)
        return engine, "backend: openvino set in config"
    errors: list[str] = []
    for name in registry.AUTO_ORDER:
        options = openvino_options(
            OpenVinoBackend(device=backend.device or "CPU"), config.state_dir
        )
        try:
            engine = registry.open_engine(name, config.model.path, **model, **options)
        except BackendUnavailableError as exc:
            errors.append(f"{name}: {exc}")
            continue
        reason = f"backend: auto chose {name}" + (
            f" after {'; '.join(errors)}" if errors else " (first available)"
        )
        return engine, reason
    raise EngineError("no inference backend is usable: " + "; ".join(errors))


def decode_options(model: ModelConfig, class_names: tuple[str, ...]) -> DecodeOptions:
    """Threshold settings, with the class allow-list turned into ids of this model."""
    class_ids = None
    if model.classes is not None:
        ids = []
        for wanted in model.classes:
            if isinstance(wanted, int):
                ids.append(wanted)
            elif wanted in class_names:
                ids.append(class_names.index(wanted))
            elif wanted.replace(" ", "_") in class_names:  # IR labels lose their spaces
                ids.append(class_names.index(wanted.replace(" ", "_")))
            else:
                known = ", ".join(class_names) or "(the model has no class names)"
                raise ConfigError(
                    f"model.classes: {wanted!r} is not a class of this model; classes: {known}"
                )
        class_ids = np.array(sorted(set(ids)), dtype=np.int32)
    return DecodeOptions(
        score_threshold=model.score_threshold,
        iou_threshold=model.iou_threshold,
        max_detections=model.max_detections,
        class_ids=class_ids,
    )
