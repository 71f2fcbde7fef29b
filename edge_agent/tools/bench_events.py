"""`edge-agent bench --events-cost`: tracking + zones + lines CPU ms per frame at 1, 20 and
100 objects (edge_agent.events.cost), and their share of one inference of the bench's
engine, so a user sees what events add on this box."""

from __future__ import annotations

from edge_agent.events.cost import COST_OBJECTS, TARGET_SHARE, inference_ms, measure_cost
from edge_agent.tools.bench_loop import BenchContext
from engines.detector import Detector

FRAMES = 100
"""Synthetic frames per object count: about a second of CPU at 100 objects."""


def run(context: BenchContext) -> dict:
    infer_ms = inference_ms(Detector(context.engine), min(context.seconds, 2.0))
    return {
        "inference_cpu_ms": infer_ms,
        "ms_per_frame": {str(objects): measure_cost(objects, FRAMES) for objects in COST_OBJECTS},
    }


def format_figures(figures: dict) -> str:
    infer_ms = figures["inference_cpu_ms"]
    lines = ["  events CPU cost per frame (tracking + 2 zones + 2 lines, synthetic boxes)"]
    for objects, ms in figures["ms_per_frame"].items():
        flag = ""
        if objects == "20":
            flag = "  (target < 10 %)" if ms <= TARGET_SHARE * infer_ms else (
                "  OVER the 10 % target")
        lines.append(f"    {int(objects):3d} objects {ms:8.3f} ms  {ms / infer_ms:6.1%} of one "
                     f"inference{flag}")
    lines.append(f"    inference {infer_ms:.2f} CPU ms a frame (engine alone, all threads)")
    return "\n".join(lines)
