"""Fitting a detection message under the broker's size limit.

A broker drops the connection on a packet over its limit (Mosquitto's
`max_packet_size`), or acknowledges and discards it (`message_size_limit`): either way
an oversize message is a poison that must never reach it. A detection payload over the
limit keeps its highest-scoring detections that fit, with `"truncated": true` and
`"detections_total"` (how many there were); one that does not fit even with no
detections is not sendable (the caller drops and counts it). Pure functions over bytes.
"""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
"""Half of AWS IoT Core's 128 KB (the smallest limit among common brokers and hubs;
Azure IoT Hub 256 KB, Mosquitto and EMQX unlimited unless set) and ~280 detections."""

PUBLISH_OVERHEAD_BYTES = 16
"""A PUBLISH packet beyond topic and payload: fixed header (1 + up to 4 length bytes),
topic length (2), packet id (2), MQTT 5 property length (1), with room to spare."""


def packet_overhead(topic: str) -> int:
    """Bytes a PUBLISH of `topic` adds to its payload (an upper bound)."""
    return PUBLISH_OVERHEAD_BYTES + len(topic.encode("utf-8"))


def fit_payload(payload: bytes, limit: int) -> bytes | None:
    """`payload` if it fits in `limit` bytes; else trimmed to fit; None if it cannot be."""
    if len(payload) <= limit:
        return payload
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("detections"), list):
        return None
    detections = message["detections"]
    ranked = sorted(detections, key=_score, reverse=True)
    total = message.get("detections_total", len(detections))

    def encoded(count: int) -> bytes:
        trimmed = {**message, "detections": ranked[:count], "truncated": True,
                   "detections_total": total}
        return _ENCODER.encode(trimmed).encode("utf-8")

    best = encoded(0)
    if len(best) > limit:
        return None
    low, high = 0, len(ranked) - 1  # the most that fit lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        candidate = encoded(middle)
        if len(candidate) <= limit:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def _score(detection: Any) -> float:
    score = detection.get("score") if isinstance(detection, dict) else None
    return float(score) if isinstance(score, (int, float)) else 0.0
