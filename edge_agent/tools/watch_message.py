"""Reading one message of the box's topics for `edge-agent watch`, trusting nothing.

Anyone who may publish on the broker can leave a retained message on the box's topics:
wrong types, deep nesting, numbers beyond a float, NaN, bytes that are not UTF-8. Every
payload goes through `read_object`, and then `check` against the fields watch reads, so
a message is either usable as the table expects or a `BadMessageError` saying why; it never
reaches the table half-read. Unknown fields are ignored (schemas grow additively) and a
missing or null field is allowed (the table shows "-"). A health message is then read
into the agent's own typed snapshot (`read_health`), so watch renders the same classes
the agent built, not a dict.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edge_agent.health.snapshot import HealthSnapshot

MAX_PAYLOAD_BYTES = 8 * 2**20
"""A detection message of 10,000 boxes is ~2 MB; beyond this it is not the agent's."""
MAX_MAGNITUDE = 1e15
"""Larger numbers are not counts, rates or times the agent sends."""


class BadMessageError(ValueError):
    """A payload watch cannot show; the text says why, for the technician."""


NUMBER = "a number"
INTEGER = "an integer"
TEXT = "text"
BOOLEAN = "true or false"

Spec = Any  # a kind above, a {key: Spec} object, or a one-element [Spec] list

INFO: Spec = {
    "agent_version": TEXT, "backend": TEXT, "device": TEXT, "started_at": TEXT,
    "model": {"name": TEXT, "input": {"width": INTEGER, "height": INTEGER}},
    "cameras": [{"id": TEXT}],
}
HEALTH: Spec = {
    "status": TEXT, "reasons": [TEXT], "uptime_s": NUMBER,
    "system": {"cpu_percent": NUMBER, "rss_bytes": INTEGER, "disk": {"free_percent": NUMBER},
               "temperatures": [{"celsius": NUMBER}]},
    "mqtt": {"connected": BOOLEAN, "queued": NUMBER, "dropped": NUMBER},
    "cameras": [{"id": TEXT, "state": TEXT, "input_fps": NUMBER, "frames_dropped": NUMBER,
                 "last_error": TEXT, "processing_error": TEXT, "drift": {"reasons": [TEXT]}}],
}
DETECTIONS: Spec = {
    "timestamp": TEXT, "inference_ms": NUMBER,
    "detections": [{"label": TEXT, "class_id": INTEGER}],
}
STATE: Spec = {"state": TEXT}


def read_text(payload: bytes) -> str:
    """A plain-text payload (status, a bare state): UTF-8, short, one line."""
    if len(payload) > 1024:
        raise BadMessageError(f"{len(payload)} bytes where a short word is expected")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise BadMessageError(f"not UTF-8 text (byte {exc.start})") from None
    return text


def read_object(payload: bytes, spec: Spec, name: str) -> dict[str, Any]:
    """Strict JSON object checked against `spec`, or BadMessageError saying why."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadMessageError(f"{len(payload)} bytes, more than {MAX_PAYLOAD_BYTES // 2**20} MiB")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessageError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_float,
                          parse_int=_int)
    except RecursionError:
        raise BadMessageError("JSON nested too deeply") from None
    except BadMessageError:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() beyond its digit limit
        raise BadMessageError(f"not JSON ({_first_line(exc)})") from None
    if not isinstance(body, dict):
        raise BadMessageError(f"JSON {_kind(body)}, not an object")
    check(body, spec, name)
    return body


def read_health(payload: bytes) -> HealthSnapshot:
    """A health message as the typed snapshot (edge_agent.health.snapshot), or
    BadMessageError naming the first field that is not what the schema says."""
    body = read_object(payload, HEALTH, "health")
    try:
        return HealthSnapshot.from_dict(body)
    except ValueError as exc:
        raise BadMessageError(str(exc)) from None


def check(value: Any, spec: Spec, where: str) -> None:
    """Raise BadMessageError at the first field whose type is not what `spec` says."""
    if value is None:
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise BadMessageError(f"{where}: expected an object, got {_kind(value)}")
        for key, inner in spec.items():
            check(value.get(key), inner, f"{where}.{key}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise BadMessageError(f"{where}: expected a list, got {_kind(value)}")
        for index, item in enumerate(value):
            check(item, spec[0], f"{where}[{index}]")
    elif not _is(value, spec):
        raise BadMessageError(f"{where}: expected {spec}, got {_kind(value)}")


def _is(value: Any, kind: str) -> bool:
    if kind == TEXT:
        return isinstance(value, str)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind == NUMBER or isinstance(value, int)


def _no_constant(name: str) -> Any:
    raise BadMessageError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise BadMessageError(f"number {text[:40]} out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 16:
        raise BadMessageError(f"number {text[:40]}{'...' if len(text) > 40 else ''} out of range")
    value = int(text)
    if abs(value) > MAX_MAGNITUDE:
        raise BadMessageError(f"number {text} out of range")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
