"""What the TensorRT backend decides without TensorRT or CUDA: the build cache and its key.

The key's parts (precision, input shape) are resolved here, next to the file formats
the backend reads (the cache, Ultralytics' `.engine` header, ONNX metadata), so all of
it is plain Python, tested on machines without a GPU; engines/tensorrt.py keeps the
TensorRT and pycuda calls.

A cache entry is `MAGIC`, a 4-byte little-endian header length, a JSON header (the
full key, the output names in model order, the payload's size and sha256) and the
serialized engine. The header lets a truncated or foreign file be recognised before
TensorRT sees it; entries are written to a temporary file and renamed into place, so
a power cut leaves the old entry or none, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.errors import EngineError, ModelLoadError
from engines.metadata import is_decimal
from engines.model_info import describe_input

log = logging.getLogger(__name__)

MAGIC = b"EDGETRT1"
_LENGTH = struct.Struct("<I")
PRECISIONS = ("auto", "fp16", "fp32", "int8")
FAST_FP16_CAPABILITIES = {(5, 3), (6, 0), (6, 2)}
"""Before Volta (7.x) only these have full-rate FP16: Jetson Nano/TX1, P100, TX2."""


def fast_fp16_by_capability(capability: tuple[int, int]) -> bool:
    """For TensorRT versions where Builder.platform_has_fast_fp16 is gone (deprecated 10.5)."""
    return capability[0] >= 7 or capability in FAST_FP16_CAPABILITIES


def resolve_precision(
    precision: str, fast_fp16: bool, calibration: Path | None
) -> tuple[str, bytes]:
    """fp16 where the GPU is fast at it; int8 only with the user's calibration cache.

    Returns the precision to build and the calibration cache's bytes (int8 only).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8":
        if calibration is None:
            raise EngineError(
                "precision int8 needs int8_calibration_cache: a TensorRT calibration cache "
                "made for this model (see docs/tensorrt.md); or use auto, fp16 or fp32"
            )
        try:
            data = Path(calibration).read_bytes()
        except OSError as exc:
            raise EngineError(
                f"int8_calibration_cache {calibration}: cannot read it ({exc.strerror})"
            ) from exc
        if not data:
            raise EngineError(f"int8_calibration_cache {calibration} is empty")
        return "int8", data
    if precision == "fp16" and not fast_fp16:
        log.warning("precision fp16 requested but this GPU has no fast FP16; it may be slow")
    if precision == "auto":
        return ("fp16" if fast_fp16 else "fp32"), b""
    return precision, b""


def concrete_shape(dims: Sequence[int], metadata: Mapping[str, str], path: Path) -> tuple[int, ...]:
    """The one input shape we feed: batch 1, 3 channels, imgsz (or 640) for dynamic sizes."""
    dims = [int(d) for d in dims]
    if len(dims) != 4:
        raise ModelLoadError(str(path), f"expected a 4-D image input, got shape {dims}")
    layout, height, width = describe_input(dims, metadata, str(path))
    wanted = [1, height, width, 3] if layout == "NHWC" else [1, 3, height, width]
    return tuple(dim if dim >= 0 else want for dim, want in zip(dims, wanted, strict=True))


@dataclass(frozen=True)
class CacheKey:
    """Everything a serialized engine depends on; any change means a different engine."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str  # the resolved one: fp16, fp32 or int8
    input_shape: tuple[int, ...]
    calibration_sha256: str = ""  # int8 only: the calibration cache it was built with

    def digest(self) -> str:
        fields = dataclasses.asdict(self)
        fields["input_shape"] = list(self.input_shape)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def file_name(self, stem: str) -> str:
        """Readable enough to tell entries apart in `ls`, unique through the digest."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "model"
        return f"{safe}.{self.precision}.{self.digest()[:20]}.engine"

    def as_json(self) -> dict[str, object]:
        fields = dataclasses.asdict(self)
        fields["input_shape"] = list(self.input_shape)
        return fields


@dataclass(frozen=True)
class CachedEngine:
    """A serialized engine and the order of its outputs in the source model."""

    payload: bytes
    output_names: tuple[str, ...]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    fsync before the rename so the rename never points at unwritten blocks; on any
    failure the temporary file is removed and `path` is untouched.
    """
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed before the rename
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class EngineCache:
    """A folder of built engines; a bad entry is reported and rebuilt, never fatal."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, key: CacheKey, stem: str) -> Path:
        return self.directory / key.file_name(stem)

    def read(self, key: CacheKey, stem: str) -> CachedEngine | None:
        """The entry for `key`, or None (with a WARNING when one exists but is unusable)."""
        path = self.path_for(key, stem)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("engine cache %s is unreadable (%s); rebuilding", path, exc.strerror)
            return None
        try:
            return _parse_entry(data, key)
        except ValueError as exc:
            log.warning("engine cache %s is unusable (%s); rebuilding", path, exc)
            return None

    def write(self, key: CacheKey, stem: str, entry: CachedEngine) -> Path | None:
        """Store an entry; a full or read-only disk costs the next start a rebuild, no more."""
        path = self.path_for(key, stem)
        header = json.dumps(
            {
                "key": key.as_json(),
                "output_names": list(entry.output_names),
                "payload_size": len(entry.payload),
                "payload_sha256": hashlib.sha256(entry.payload).hexdigest(),
            }
        ).encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, MAGIC + _LENGTH.pack(len(header)) + header + entry.payload)
        except OSError as exc:
            log.warning("cannot write engine cache %s (%s); the next start rebuilds", path, exc)
            return None
        return path


def _parse_entry(data: bytes, key: CacheKey) -> CachedEngine:
    """Check magic, header, key and checksum; ValueError says which one failed."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise ValueError("not an edge-agent engine cache file")
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start : start + length])
        payload = data[start + length :]
        stored_key = header["key"]
        size, digest = int(header["payload_size"]), str(header["payload_sha256"])
        names = tuple(str(name) for name in header["output_names"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"damaged header: {exc}") from None
    if stored_key != key.as_json():
        raise ValueError("built for another model, TensorRT, GPU, precision or shape")
    if len(payload) != size:
        raise ValueError(f"truncated: {len(payload)} of {size} engine bytes")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError("engine bytes do not match their checksum")
    return CachedEngine(payload, names)


def split_ultralytics_header(data: bytes) -> tuple[dict[str, str], bytes]:
    """Ultralytics `.engine` files start with a 4-byte LE length and JSON metadata.

    Returns the metadata flattened to strings the way engines.model_info reads them
    (`names` as a Python literal with int keys) and the serialized engine after it;
    ({}, data) when the file has no such header.
    """
    if len(data) < _LENGTH.size:
        return {}, data
    (length,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + length
    if length == 0 or end >= len(data):
        return {}, data
    try:
        metadata = json.loads(data[_LENGTH.size : end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}, data
    if not isinstance(metadata, dict):
        return {}, data
    names = metadata.get("names")
    if isinstance(names, dict):  # JSON keys are strings: "10" must sort after "9"
        metadata["names"] = {int(k) if is_decimal(str(k)) else k: v
                             for k, v in names.items()}
    flat = {str(k): v if isinstance(v, str) else repr(v) for k, v in metadata.items()}
    return flat, data[end:]


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """Top-level protobuf fields (number, wire type, value), values left undecoded."""
    found: list[tuple[int, int, bytes | int]] = []
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(data, position)
            found.append((number, wire, value))
        elif wire == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ValueError(f"field {number} runs past the end of the file")
            found.append((number, wire, data[position : position + length]))
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if position != len(data):
        raise ValueError("truncated")
    return found


def onnx_metadata(path: Path) -> dict[str, str]:
    """ONNX `metadata_props` (ModelProto field 14), without the onnx package.

    Only top-level fields are walked and the graph is skipped by its length, so this
    reads a 100 MB model in milliseconds. ValueError if the file is not protobuf.
    """
    metadata: dict[str, str] = {}
    for number, wire, value in _fields(path.read_bytes()):
        if number != 14 or wire != 2 or not isinstance(value, bytes):
            continue
        entry = {n: v for n, w, v in _fields(value) if w == 2 and isinstance(v, bytes)}
        key, text = entry.get(1, b"").decode("utf-8", "replace"), entry.get(2, b"")
        if key:
            metadata[key] = text.decode("utf-8", "replace")
    return metadata
