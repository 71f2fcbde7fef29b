"""What tracking + zones + lines cost per frame, for `edge-agent bench --events-cost`."""

from __future__ import annotations

import time

from edge_agent.config.zones import LineConfig, TrackerConfig, ZoneConfig
from edge_agent.events.camera import CameraEvents
from edge_agent.events.synthetic import scene
from engines.detector import Detector

COST_OBJECTS = (1, 20, 100)
TARGET_SHARE = 0.10
"""Events may cost at most this share of one inference at 20 objects (issue 11)."""

WARMUP_FRAMES = 5


def typical_camera() -> CameraEvents:
    """Two zones (one with a dwell time) and two lines: a usual street or yard setup."""
    zones = [
        ZoneConfig(name="bay", points=[(0.1, 0.5), (0.6, 0.5), (0.6, 1.0), (0.1, 1.0)],
                   dwell_s=30),
        ZoneConfig(name="door", points=[(0.6, 0.2), (0.9, 0.2), (0.95, 0.6), (0.55, 0.6)],
                   classes=["person"]),
    ]
    lines = [
        LineConfig(name="gate", points=[(0.5, 0.0), (0.5, 1.0)], count_window_s=3600),
        LineConfig(name="kerb", points=[(0.0, 0.7), (1.0, 0.65)]),
    ]
    return CameraEvents("bench", zones, lines, TrackerConfig(), ["person", "car"])


def measure_cost(objects: int, frames: int) -> float:
    """Mean CPU ms per `CameraEvents.update` with `objects` boxes in each frame.

    CPU time of this thread, not wall time: on a busy box the wall time also counts the
    time other processes had the core, which is not this code's cost. The detections are
    synthetic (edge_agent.events.synthetic) and made before timing, so only tracking,
    zones, lines and event building are measured.
    """
    clip = list(scene(objects, frames + WARMUP_FRAMES, seed=objects))
    events = typical_camera()
    frame_size = (768, 576)
    for item in clip[:WARMUP_FRAMES]:
        events.update(item.detections, frame_size, 1e9 + item.time, item.time)
    started = time.thread_time()
    for item in clip[WARMUP_FRAMES:]:
        events.update(item.detections, frame_size, 1e9 + item.time, item.time)
    return (time.thread_time() - started) * 1000 / frames


def inference_ms(detector: Detector, seconds: float) -> float:
    """CPU ms of the whole process per inference of the bare engine (all its threads).

    CPU rather than wall time, like `measure_cost`, so the share holds on a busy box.
    """
    started = time.process_time()
    wall = time.perf_counter()
    fps = detector.raw_throughput(seconds)
    frames = fps * (time.perf_counter() - wall)
    return (time.process_time() - started) * 1000 / max(frames, 1.0)


def cost_report(infer_ms: float | None, frames: int = 100) -> str:
    """Lines for bench: ms per frame at 1, 20 and 100 objects, and the share of inference."""
    lines = ["events CPU cost per frame (tracking + 2 zones + 2 lines, synthetic boxes)"]
    for objects in COST_OBJECTS:
        ms = measure_cost(objects, frames)
        share = "" if infer_ms is None else f"  {ms / infer_ms:6.1%} of one inference"
        flag = ""
        if infer_ms is not None and objects == 20:
            flag = "  (target < 10 %)" if ms <= TARGET_SHARE * infer_ms else (
                "  OVER the 10 % target")
        lines.append(f"  {objects:3d} objects {ms:8.3f} ms{share}{flag}")
    if infer_ms is not None:
        lines.append(f"  inference {infer_ms:.2f} CPU ms a frame (engine alone, all threads)")
    return "\n".join(lines)
