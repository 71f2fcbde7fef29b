"""Facts about a model read from the model itself: hash, class names, input size, family.

Backends extract a flat `metadata` dict (ONNX metadata_props, IR rt_info, an
Ultralytics `metadata.yaml` beside the file) and this module interprets it the same
way for all of them.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import yaml

from engines.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 640
"""Ultralytics' default; used only when a dynamic-shape model carries no imgsz."""


def file_sha256(*paths: Path) -> str:
    """One hash over the model's files (an IR is .xml plus .bin)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_files(path: Path) -> list[Path]:
    """The files a model consists of, or a ModelLoadError saying which one is missing.

    An Ultralytics `*_openvino_model/` folder stands for the one `.xml` inside it.
    """
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if len(found) != 1:
            raise ModelLoadError(
                str(path), f"a folder with {len(found)} .xml files; name the model file itself"
            )
        path = found[0]
    if not path.is_file():
        raise ModelLoadError(str(path), "file not found" if not path.exists() else "not a file")
    files = [path]
    if path.suffix.lower() == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(str(path), f"its weights file {weights.name} is missing")
        files.append(weights)
    return files


def sidecar_metadata(path: Path) -> dict[str, str]:
    """Ultralytics exports put `metadata.yaml` beside the model; read it if present."""
    sidecar = path.parent / "metadata.yaml"
    if not sidecar.is_file():
        return {}
    try:
        data = yaml.safe_load(sidecar.read_text())
    except (OSError, yaml.YAMLError) as exc:
        log.warning("ignoring unreadable %s: %s", sidecar, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(key): val if isinstance(val, str) else repr(val) for key, val in data.items()}


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def class_names_from_metadata(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """Names from Ultralytics `names` ({0: 'person', ...}) or an IR's `labels` list."""
    names = metadata.get("names")
    if names:
        parsed = _literal(names)
        if isinstance(parsed, dict):
            return tuple(str(parsed[key]) for key in sorted(parsed))
        if isinstance(parsed, list | tuple):
            return tuple(str(name) for name in parsed)
    labels = metadata.get("labels")
    if labels:
        parsed = _literal(labels)
        if isinstance(parsed, list | tuple):
            return tuple(str(name) for name in parsed)
        return tuple(labels.split())
    return ()


def read_labels(path: Path) -> tuple[str, ...]:
    """A labels file: one class name a line, blank lines ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelLoadError(str(path), f"cannot read labels file: {exc.strerror}") from exc
    return tuple(line.strip() for line in lines if line.strip())


def image_size_from_metadata(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """Ultralytics `imgsz` ([h, w] or one int) for models exported with dynamic shapes."""
    parsed = _literal(metadata.get("imgsz", ""))
    if isinstance(parsed, int):
        return parsed, parsed
    if isinstance(parsed, list | tuple) and len(parsed) == 2:
        return int(parsed[0]), int(parsed[1])
    return None


def family_hint(metadata: Mapping[str, str]) -> str | None:
    """Ultralytics marks NMS-free exports with end2end; otherwise the output shape decides."""
    if str(metadata.get("end2end", "")).lower() == "true":
        return "end2end"
    return None
