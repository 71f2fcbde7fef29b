"""The events cost figure bench prints (tools/bench_events.py): a generous ceiling on it."""

from __future__ import annotations

from edge_agent.events.cost import measure_cost


def test_cost_at_20_objects_stays_far_below_an_inference() -> None:
    """CPU ms, so a busy CI box does not inflate it; the target (10 % of a ~10-15 ms
    inference, docs/events.md) is checked by bench, this only catches a blow-up."""
    assert 0 < measure_cost(20, 40) < 5.0
