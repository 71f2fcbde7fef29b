"""Trimming a detection message to the size limit: a pure function, tried on a table."""

from __future__ import annotations

import json

import pytest

from edge_agent.publish.message_size import fit_payload
from tests.helpers import detection_message


def test_a_message_that_fits_is_sent_as_it_is() -> None:
    payload = detection_message(3)
    assert fit_payload(payload, len(payload)) is payload


@pytest.mark.parametrize("count", [1, 2, 5, 40, 300])
@pytest.mark.parametrize("limit", [600, 700, 1000, 2000, 5000, 65536])
def test_an_oversize_message_keeps_the_best_detections_that_fit(count: int, limit: int) -> None:
    payload = detection_message(count, seed=count * limit)
    fitted = fit_payload(payload, limit)
    original = json.loads(payload)
    empty = len(json.dumps({**original, "detections": [], "truncated": True,
                            "detections_total": count}, separators=(",", ":")))
    if len(payload) <= limit:
        assert fitted is payload
        return
    if empty > limit:
        assert fitted is None  # not even the frame without detections fits: dropped
        return
    assert fitted is not None
    assert len(fitted) <= limit
    message = json.loads(fitted)
    assert message["truncated"] is True
    assert message["detections_total"] == count
    kept = message["detections"]
    scores = sorted((d["score"] for d in original["detections"]), reverse=True)
    assert [d["score"] for d in kept] == scores[: len(kept)]  # the best ones, best first
    # As many as fit: one more would not.
    if len(kept) < count:
        bigger = {**message, "detections": [*kept, kept[-1] if kept else
                                            original["detections"][0]]}
        assert len(json.dumps(bigger, separators=(",", ":")).encode()) > limit
    assert {k: v for k, v in message.items()
            if k not in ("detections", "truncated", "detections_total")} == {
        k: v for k, v in original.items() if k != "detections"}


@pytest.mark.parametrize("payload", [b"x" * 5000, b"[1, 2, 3]" * 600, b'{"a": 1}' + b" " * 5000])
def test_an_oversize_message_that_is_not_a_detection_message_is_not_sendable(
    payload: bytes,
) -> None:
    assert fit_payload(payload, 1000) is None
