"""`edge-agent watch` shows counts per line and occupancy per zone from their retained
topics; a removed shape disappears; a wrong table is a bad message, not a crash."""

from __future__ import annotations

from edge_agent.delivery.payloads import counts_payload, occupancy_payload
from edge_agent.tools.watch_view import WatchState, render

BASE = "edge-agent/box1"


def test_counts_and_occupancy_are_shown_and_cleared() -> None:
    state = WatchState(base_topic=BASE)
    state.on_message(f"{BASE}/gate/lines/gate-line/counts", counts_payload(
        camera_id="gate", line="gate-line", counts={"in": {"person": 3, "car": 1}, "out": {}},
        since=1_764_480_000.0, at=1_764_480_100.0), 1.0, 1_764_480_100.0)
    state.on_message(f"{BASE}/gate/zones/bay/occupancy", occupancy_payload(
        camera_id="gate", zone="bay", occupancy={"person": 2}, at=1_764_480_100.0),
        1.0, 1_764_480_100.0)
    state.on_message(f"{BASE}/gate/snapshot/person", b"\xff\xd8 a jpeg", 1.0, 0.0)
    screen = render(state, 2.0, 1_764_480_101.0)
    assert "gate             zone bay: person 2" in screen
    assert "line gate-line: in car 1, person 3; out 0 (since 2025-11-30T05:20:00.000Z)" in screen
    assert "bad message" not in screen
    state.on_message(f"{BASE}/gate/zones/bay/occupancy", b"", 3.0, 0.0)
    assert "zone bay" not in render(state, 4.0, 1_764_480_101.0)


def test_a_wrong_table_is_a_bad_message() -> None:
    state = WatchState(base_topic=BASE)
    for payload in (b'{"counts": {"in": {"person": -1}}}', b'{"counts": 3}', b"[1]",
                    b'{"occupancy": {"person": "many"}}'):
        topic = "lines/l/counts" if b"counts" in payload or payload == b"[1]" else \
            "zones/z/occupancy"
        state.on_message(f"{BASE}/gate/{topic}", payload, 1.0, 0.0)
    assert state.bad_total == 4
    assert "bad message on" in render(state, 2.0, 0.0)
