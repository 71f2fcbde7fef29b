"""The model description, one module for every backend: files and hash, input layout and
size, class names, ONNX and Ultralytics metadata, and the one-frame contract.

Backends extract a flat `metadata` dict (ONNX metadata_props, IR rt_info, an
Ultralytics `metadata.yaml` beside the file) and the input's dims, and this module
interprets them the same way for all of them. The family (which postprocessing) is
chosen in engines.postprocess from these facts and the output shapes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from engines.errors import LabelsFileError, ModelFileError, ModelLoadError
from engines.metadata import class_names as checked_class_names
from engines.metadata import literal, read_sidecar
from engines.regular_file import open_regular

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 640
"""Ultralytics' default; used only when a dynamic-shape model carries no imgsz."""
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 32, 8192
"""Input sides the postprocessing can use (a stride-32 grid needs at least one cell)."""


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
        raise ModelFileError(str(path), "file not found" if not path.exists() else "not a file")
    files = [path]
    if path.suffix.lower() == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelFileError(str(path), f"its weights file {weights.name} is missing")
        files.append(weights)
    return files


def sidecar_metadata(path: Path) -> dict[str, str]:
    """Ultralytics exports put `metadata.yaml` beside the model; read it (bounded) if present.

    A sidecar that is there but unusable is a ModelLoadError naming it, never ignored:
    its class names would otherwise silently go missing.
    """
    sidecar = path.parent / "metadata.yaml"
    if not sidecar.is_file():
        return {}
    return read_sidecar(sidecar)


def class_names_from_metadata(
    metadata: Mapping[str, str], where: str = "model"
) -> tuple[str, ...]:
    """Names from Ultralytics `names` ({0: 'person', ...}) or an IR's `labels` list,
    checked (ids 0..n-1, text names); a ModelLoadError naming `where` otherwise."""
    names = metadata.get("names")
    if names:
        found = checked_class_names(literal(names, where, "names"), where, "names")
        if found is not None:
            return found
        raise ModelLoadError(where, f"metadata 'names' is not a list or map of class names: "
                             f"{names[:80]!r}", any_backend=True)
    labels = metadata.get("labels")
    if labels:
        found = checked_class_names(literal(labels, where, "labels"), where, "labels")
        return found if found is not None else tuple(labels.split())
    return ()


MAX_LABELS_BYTES = 1 << 20
LABELS_FORM = "(one class name per line, UTF-8 text)"


def read_labels(path: Path) -> tuple[str, ...]:
    """A labels file: one class name a line, blank lines ignored, read as the config is.

    UTF-8 with or without a byte-order mark; anything else (Latin-1, UTF-16) is refused
    with the line and byte, never guessed: a wrong guess would publish wrong names.
    """
    try:
        with open_regular(path) as handle:  # a FIFO or /dev/zero would block or never end
            raw = handle.read(MAX_LABELS_BYTES + 1)
    except FileNotFoundError:
        raise LabelsFileError(str(path), f"not found {LABELS_FORM}") from None
    except OSError as exc:
        raise LabelsFileError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_LABELS_BYTES:
        raise LabelsFileError(str(path), f"is larger than 1 MiB; expected {LABELS_FORM}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LabelsFileError(
            str(path),
            f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save it as UTF-8 "
            f"{LABELS_FORM}",
        ) from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _usable_side(pixels: int) -> bool:
    return MIN_IMAGE_SIDE <= pixels <= MAX_IMAGE_SIDE


def image_size_from_metadata(
    metadata: Mapping[str, str], where: str = "model"
) -> tuple[int, int] | None:
    """Ultralytics `imgsz` ([h, w] or one int) for models exported with dynamic shapes."""
    text = metadata.get("imgsz", "")
    if not text:
        return None
    parsed = literal(text, where, "imgsz")
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        parsed = [parsed, parsed]
    if (isinstance(parsed, list | tuple) and len(parsed) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in parsed)):
        height, width = int(parsed[0]), int(parsed[1])
        if _usable_side(height) and _usable_side(width):
            return height, width
    raise ModelLoadError(where, f"metadata 'imgsz' is {text[:40]!r}; expected a size or "
                         f"[height, width] of {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} pixels",
                         any_backend=True)


def family_hint(metadata: Mapping[str, str]) -> str | None:
    """Ultralytics marks NMS-free exports with end2end; otherwise the output shape decides."""
    if str(metadata.get("end2end", "")).lower() == "true":
        return "end2end"
    return None


def check_one_frame_batch(dims: Sequence[int], path: str) -> None:
    """The agent feeds one frame per request: a fixed batch > 1 is refused at load.

    Such a model would fail on its first request (OpenVINO rejects the shape) or be
    taken for another family from its [4, N, C] outputs. A dynamic batch (-1) is fine:
    the backends pin it to 1.
    """
    if len(dims) == 4 and int(dims[0]) > 1:
        raise ModelLoadError(
            path,
            f"its input has a fixed batch of {int(dims[0])} (shape {list(dims)}), but the "
            "agent sends one frame at a time; export the model with batch 1 or a dynamic "
            "batch (Ultralytics: model.export(format=..., batch=1) or dynamic=True; "
            "torch.onnx.export: dynamic_axes={'images': {0: 'batch'}})",
        )


def input_layout(dims: Sequence[int]) -> str:
    """NCHW or NHWC from a 4-D image input's dims (-1 where dynamic); the only guesser.

    Channels are the 3 at dim 1 (NCHW, ONNX's convention, which also wins when both
    dims are 3) or at dim 3 (NHWC). A dynamic channel dim reads as NCHW, the export
    default; anything else is a ValueError saying what was found.
    """
    dims = [int(d) for d in dims]
    if len(dims) != 4:
        raise ValueError(f"expected a 4-D image input, got shape {dims}")
    if dims[1] == 3:
        return "NCHW"
    if dims[3] == 3:
        return "NHWC"
    if dims[1] < 0:
        return "NCHW"
    raise ValueError(f"cannot tell channels in input shape {dims}: neither dim 1 nor 3 is 3")


def input_size(
    dims: Sequence[int], layout: str, metadata: Mapping[str, str], where: str = "model"
) -> tuple[int, int]:
    """Height and width we feed: the input's own, or imgsz (else 640) where dynamic."""
    height, width = (int(dims[2]), int(dims[3])) if layout == "NCHW" else (
        int(dims[1]), int(dims[2]))
    if height < 0 or width < 0:
        default = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
        return image_size_from_metadata(metadata, where) or default
    if not _usable_side(height) or not _usable_side(width):
        raise ModelLoadError(where, f"its input is {width}x{height} pixels; the agent needs "
                             f"{MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} per side (export with "
                             "imgsz=640)", any_backend=True)
    return height, width


def describe_input(
    dims: Sequence[int], metadata: Mapping[str, str], path: str
) -> tuple[str, int, int]:
    """Layout, height and width of a one-frame image input, or a ModelLoadError."""
    check_one_frame_batch(dims, path)
    try:
        layout = input_layout(dims)
    except ValueError as exc:
        raise ModelLoadError(path, str(exc)) from exc
    height, width = input_size(dims, layout, metadata, path)
    return layout, height, width
