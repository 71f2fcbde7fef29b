"""The metadata a model file carries, read without compiling it.

`check-config` checks class names in the config against the model's own names when no
labels file is given (Ultralytics exports carry them). Compiling would take seconds and
a device; reading the file's metadata takes milliseconds. The precedence is the
backends': the `metadata.yaml` sidecar first, the file's own metadata over it.
"""

from __future__ import annotations

from pathlib import Path

from engines.engine_cache import onnx_metadata, split_ultralytics_header
from engines.errors import ModelFileError, ModelLoadError
from engines.model_info import class_names_from_metadata, model_files, sidecar_metadata


def read_model_metadata(path: Path) -> dict[str, str]:
    """Sidecar and file metadata of an ONNX, OpenVINO IR or (Ultralytics) TensorRT engine
    file (or an Ultralytics `*_openvino_model/` folder), as strings. ModelLoadError
    (ModelFileError for a missing file) names the file when it cannot be read as one."""
    path = model_files(path)[0]
    metadata = sidecar_metadata(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            metadata.update(onnx_metadata(path))
        elif suffix == ".xml":
            metadata.update(_ir_metadata(path))
        elif suffix in (".engine", ".plan", ".trt"):
            metadata.update(split_ultralytics_header(path.read_bytes())[0])
    except OSError as exc:
        raise ModelLoadError(str(path), f"cannot read it ({exc.strerror or exc})") from exc
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(str(path), f"not a readable model ({exc})") from exc
    return metadata


def unreadable(path: Path) -> str | None:
    """Why the model file cannot be read as a model (cut short, not a model), or None.
    A missing file is None: whoever asks reports that in its own words. Milliseconds:
    the file's structure is walked, nothing is compiled."""
    try:
        read_model_metadata(path)
    except ModelFileError:
        return None
    except (ModelLoadError, OSError) as exc:
        return str(exc)
    return None


def class_names_in_file(path: Path) -> tuple[str, ...]:
    """The class names the model file states (empty when it states none)."""
    return class_names_from_metadata(read_model_metadata(path), str(path))


def _ir_metadata(path: Path) -> dict[str, str]:
    # Imported here: only IR files need the runtime to be read.
    import openvino as ov

    from engines.openvino import rt_metadata

    return rt_metadata(ov.Core().read_model(str(path)))
