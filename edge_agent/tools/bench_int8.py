"""`edge-agent bench --int8`: the FP model and its INT8 build side by side, same video.

Builds the INT8 model from the bench video itself (the first int8_calibration_frames
frames calibrate, the next int8_check_frames are held back for the guard) into a
temporary folder, so the box's own cache under state_dir is never touched, then
measures both: the bare engine (frames/s), the whole loop to a private broker
(frames/s), and the guard's F1 of INT8 against FP. A build the guard refuses is still
measured, and the report says it would not be used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edge_agent.config.model import BACKEND_SECTIONS, AgentConfig, FileCamera
from edge_agent.selection import int8
from edge_agent.selection.loading import select_engine
from edge_agent.selection.probe import HardwareReport
from edge_agent.tools.bench import loop_figures, private_broker
from engines.base import Engine
from engines.detector import Detector


def fp_config(config: AgentConfig) -> AgentConfig:
    """The config on OpenVINO at full precision (its own int8_* settings kept)."""
    base = config.backend.model_dump() if getattr(config.backend, "type", "") == "openvino" \
        else {"type": "openvino"}
    backend = BACKEND_SECTIONS["openvino"].model_validate({**base, "precision": "auto"})
    return config.model_copy(update={"backend": backend})


def _figures(config: AgentConfig, engine: Engine, video: Path, seconds: float) -> dict:
    engine_fps = Detector(engine).raw_throughput(seconds)
    with private_broker() as mqtt:
        loop = loop_figures(config, engine, video, mqtt, seconds)
    return {"engine_fps": engine_fps, "loop_fps": loop["fps"], "stage_ms": loop["stage_ms"]}


def measure_int8(config: AgentConfig, hardware: HardwareReport, video: Path,
                 seconds: float) -> dict:
    """FP and INT8 figures and the guard's verdict; see the module docstring."""
    config = fp_config(config)
    settings = config.backend
    fp = select_engine(config, hardware).engine
    try:
        fp_figures = _figures(config, fp, video, seconds)
        wanted = settings.int8_calibration_frames + settings.int8_check_frames  # type: ignore[union-attr]
        camera = FileCamera(id="bench", type="file", path=video)
        frames = int8.camera_frames([camera], wanted)
        with tempfile.TemporaryDirectory(prefix="edge-agent-int8-") as folder:
            started = time.perf_counter()
            record = int8.build_now(config, fp, frames, f"video {video}", Path(folder) / "build")
            build_s = time.perf_counter() - started
            passed, reason = record.judged(settings.int8_min_f1)  # type: ignore[union-attr]
            quantized = int8.open_int8(config, Path(folder) / "build" / "model.xml").engine
            try:
                int8_figures = _figures(config, quantized, video, seconds)
            finally:
                quantized.close()
    finally:
        fp.close()
    return {
        "model": fp.info.name, "device": fp.device, "video": str(video),
        "calibration_frames": record.calibration.frames, "check_frames": record.score.frames,
        "preset": record.calibration.preset, "build_s": round(build_s, 1),
        "fp": fp_figures, "int8": int8_figures,
        "engine_speedup": int8_figures["engine_fps"] / fp_figures["engine_fps"],
        "loop_speedup": int8_figures["loop_fps"] / fp_figures["loop_fps"],
        "guard": {**record.score.as_dict(), "passed": passed, "reason": reason,
                  "min_f1": settings.int8_min_f1},  # type: ignore[union-attr]
    }


def format_int8(report: dict) -> str:
    guard = report["guard"]
    verdict = "passed: the agent would run it" if guard["passed"] else \
        "REFUSED: the agent would stay on FP"
    lines = [
        f"model {report['model']} on openvino/{report['device']}, video {report['video']}",
        f"  INT8 build: NNCF {report['preset']} on {report['calibration_frames']} frames, "
        f"{report['build_s']:.0f} s",
        "                 engine fps  loop fps  infer ms",
    ]
    for name in ("fp", "int8"):
        figures = report[name]
        lines.append(f"  {name.upper():<14} {figures['engine_fps']:11.1f} "
                     f"{figures['loop_fps']:9.1f} {figures['stage_ms']['infer']:9.2f}")
    lines += [
        f"  INT8 / FP      {report['engine_speedup']:11.2f} {report['loop_speedup']:9.2f}",
        f"  guard: F1 {guard['f1']:.3f} (precision {guard['precision']:.3f}, recall "
        f"{guard['recall']:.3f}) on {report['check_frames']} held-back frames, "
        f"min {guard['min_f1']:g}: {verdict}",
    ]
    return "\n".join(lines)


def main(config: AgentConfig, hardware: HardwareReport, video: Path,
         args: argparse.Namespace) -> int:
    report = measure_int8(config, hardware, video, args.seconds)
    print(json.dumps(report, indent=2) if args.json else format_int8(report))
    return 0
