"""`edge-agent bench --cameras`: N cameras of the same video on one engine.

For each count: total frames/s, frames/s per camera and p95 capture-to-publish latency,
first with cameras sharing the engine's parallel requests (one frame per inference), then
with frames batched across cameras (engines/batching.py) when the backend can batch. The
target is 4 cameras total >= 0.95 x the single-camera serial bound.
"""

from __future__ import annotations

import logging

from edge_agent.batching import with_batching
from edge_agent.errors import AgentError
from edge_agent.selection.loading import Selection, select_engine
from edge_agent.tools.bench_loop import BenchContext, loop_figures, replicated
from engines.base import Engine
from engines.batching import BatchingEngine, BatchStats
from engines.openvino_config import BatchSettings

log = logging.getLogger(__name__)

BENCH_BATCH = BatchSettings(max_size=4, max_wait_ms=5.0)
"""Batching measured when the config sets none."""


def parse_counts(value: object) -> list[int]:
    """"1,2,4" -> [1, 2, 4]; AgentError on anything else."""
    try:
        counts = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(count < 1 or count > 64 for count in counts):
        raise AgentError(f"--cameras takes counts of 1..64 like 1,2,4, not {value!r}")
    return counts


def run(context: BenchContext) -> dict:
    counts = parse_counts(getattr(context.args, "section_cameras", None) or "1,2,4")
    modes = {"shared": _runs(context, context.engine, counts)}
    config = context.config
    if "batch" in type(config.backend).model_fields and context.engine.backend == "openvino":
        batch = getattr(config.backend, "batch", None) or BENCH_BATCH
        batched_config = config.model_copy(
            update={"backend": config.backend.model_copy(update={"batch": batch})})
        selection = select_engine(batched_config, context.hardware)
        try:
            selection = with_batching(selection, batched_config)
        except Exception as exc:  # a model whose outputs cannot be split: say so
            modes["batched"] = {"error": str(exc)}
        else:
            modes["batched"] = _runs(context, selection.engine, counts, selection)
            modes["batched"]["batch"] = batch.model_dump()
    return {"bound_fps": context.bound_fps, "counts": counts, "modes": modes}


def _runs(context: BenchContext, engine: Engine, counts: list[int],
          owned: Selection | None = None) -> dict:
    try:
        runs = {}
        for count in counts:
            if isinstance(engine, BatchingEngine):
                engine.stats = BatchStats()
            figures = loop_figures(context.config, engine, replicated(context.video, count),
                                   context.mqtt, context.seconds, device_id=context.device_id)
            figures["over_bound"] = figures["fps"] / context.bound_fps
            if isinstance(engine, BatchingEngine):  # how full its batches were
                figures["mean_batch"] = engine.stats.mean_size
                figures["max_fill_wait_ms"] = engine.stats.max_fill_wait_ms
            runs[str(count)] = figures
        return {"runs": runs}
    finally:
        if owned is not None:
            owned.engine.close()


def format_figures(figures: dict) -> str:
    lines = [f"  cameras on one engine (single-camera bound {figures['bound_fps']:.1f} fps)",
             "    mode     cameras  total fps  /bound  p95 ms  per-camera fps"]
    for mode, result in figures["modes"].items():
        if "error" in result:
            lines.append(f"    {mode:<8} cannot batch: {result['error']}")
            continue
        for count, run in result["runs"].items():
            p95 = run["p95_ms"]
            per_camera = " ".join(f"{cam['fps']:.1f}" for cam in run["cameras"].values())
            extra = (f"  (mean batch {run['mean_batch']:.2f}, fill wait <= "
                     f"{run['max_fill_wait_ms']:.1f} ms)" if "mean_batch" in run else "")
            lines.append(f"    {mode:<8} {count:>7} {run['fps']:10.1f} {run['over_bound']:7.2f}"
                         f" {p95 if p95 is None else round(p95, 1)!s:>7}  {per_camera}{extra}")
    return "\n".join(lines)
