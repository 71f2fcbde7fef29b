"""The events cost figure bench prints, and a generous ceiling on it."""

from __future__ import annotations

from edge_agent.events.cost import cost_report, measure_cost


def test_cost_at_20_objects_stays_far_below_an_inference() -> None:
    """CPU ms, so a busy CI box does not inflate it; the target (10 % of a ~10-15 ms
    inference, docs/events.md) is checked by bench, this only catches a blow-up."""
    assert 0 < measure_cost(20, 40) < 5.0


def test_cost_report_names_each_size_and_the_share_of_inference() -> None:
    lines = cost_report(infer_ms=1000.0, frames=5).splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["1", "20", "100"]
    assert "of one inference  (target < 10 %)" in lines[2]
    assert lines[-1].startswith("  inference 1000.00 CPU ms")
    over = cost_report(infer_ms=0.001, frames=5).splitlines()[2]
    assert over.endswith("OVER the 10 % target")
