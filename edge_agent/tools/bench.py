"""`edge-agent bench`: engine alone, decode alone, their serial bound and the whole loop.

All run in one process on the same model, video and CPU, so the ratio loop/bound says
how much the agent's own work costs. The loop runs every enabled camera of the config
(file cameras looping at full speed; total and per camera), or one camera of `--video`.
`--backend NAME` measures that backend instead of the config's; `--backend all` measures
every backend whose runtime is present here, one after the other, side by side. The
loop publishes every frame to a real Mosquitto: a private one started here, or the
config's own broker with `--broker config`. Optional sections (edge_agent/tools/
bench_sections.py: `--cameras` ...) add their figures; `--all` runs every one.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

from edge_agent.config.loader import load_config
from edge_agent.config.model import BACKEND_SECTIONS, AgentConfig, FileCamera
from edge_agent.errors import AgentError
from edge_agent.pipeline_stats import STAGES
from edge_agent.selection.loading import select_engine
from edge_agent.selection.probe import HardwareReport, detect_runtimes, probe
from edge_agent.tools.bench_loop import (
    BenchContext,
    bench_broker,
    bench_cameras,
    decode_fps,
    loop_figures,
    private_broker,
    video_size,
)
from edge_agent.tools.bench_sections import chosen
from edge_agent.tools.options import model_for, source_lines
from engines.detector import Detector

__all__ = ["decode_fps", "loop_figures", "private_broker"]  # kept where they were


def configs_to_bench(config: AgentConfig, backend: str | None) -> list[AgentConfig]:
    """The config as is, with one backend forced, or once per backend present here."""
    if backend is None:
        return [config]
    runtimes = detect_runtimes() if backend == "all" else None
    names = [backend] if runtimes is None else [
        name for name in BACKEND_SECTIONS if runtimes.status(name).usable
    ]
    return [config.model_copy(update={"backend": BACKEND_SECTIONS[name].model_validate(
        {"type": name})}) for name in names]


def main(args: argparse.Namespace) -> int:
    running = model_for(load_config(args.config), args)  # a deployed version, if one runs
    config = running.config  # every section measures that model
    video = args.video or next(
        (cam.path for cam in config.cameras if isinstance(cam, FileCamera)), None
    )
    if video is None:
        raise AgentError("no video: pass --video or put a file camera in the config")
    hardware = probe()
    video_fps = decode_fps(video, args.seconds)
    reports = [measure(each, hardware, video, video_fps, args)
               for each in configs_to_bench(config, getattr(args, "backend", None))]
    for report in reports:
        report["model_source"] = running.to_json()
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else {"runs": reports}, indent=2))
    else:
        print("\n\n".join(format_report(report) for report in reports))
        if len(reports) > 1:
            print("\n" + format_comparison(reports))
    return 0


def measure(
    config: AgentConfig, hardware: HardwareReport, video: Path, video_fps: float,
    args: argparse.Namespace,
) -> dict:
    """One backend's figures: engine alone, the serial bound, the whole loop, sections."""
    seconds = args.seconds
    selection = select_engine(config, hardware)
    engine, reason = selection.engine, selection.reason
    if selection.fallbacks:
        reason += f" (after: {'; '.join(selection.fallbacks)})"
    sections: dict[str, dict] = {}
    try:
        # The engine the loop will use: with input_size auto, a wide video runs on the
        # rectangular shape, so the bound must be that shape's too.
        width, height = video_size(video)
        shaped = engine.input_shapes.engine_for(width, height, wait=True) \
            if engine.input_shapes is not None else engine
        engine_fps = Detector(shaped).raw_throughput(seconds)
        bound = 1.0 / (1.0 / engine_fps + 1.0 / video_fps)
        cameras = bench_cameras(config, args.video)
        with bench_broker(config, getattr(args, "broker", "private")) as (mqtt, device_id):
            loop = loop_figures(config, engine, cameras, mqtt, seconds, device_id=device_id)
            context = BenchContext(config, hardware, engine, video, cameras, mqtt, device_id,
                                   seconds, video_fps, engine_fps, bound, args)
            for section, _value in chosen(args):
                sections[section.name] = section.function("run")(context)
    finally:
        engine.close()
    return {
        "model": engine.info.name,
        "backend": engine.backend,
        "device": engine.device,
        "backend_reason": reason,
        "video": str(video),
        "engine_fps": engine_fps,
        "decode_fps": video_fps,
        "bound_fps": bound,
        "loop_fps": loop["fps"],
        "loop_over_bound": loop["fps"] / bound,
        "loop_over_engine": loop["fps"] / engine_fps,
        "stage_ms": loop["stage_ms"],
        "loop_frames": loop["frames"],
        "loop_p95_ms": loop["p95_ms"],
        "cameras": loop["cameras"],
        "published": loop["published"],
        "acknowledged": loop["acknowledged"],
        "dropped": loop["dropped"],
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sections": sections,
    }


def format_comparison(reports: list[dict]) -> str:
    """Backends side by side, same model, video and CPU."""
    lines = ["backend/device              engine fps  loop fps  infer ms  loop/bound"]
    lines += [
        f"{report['backend'] + '/' + report['device']:<26} {report['engine_fps']:11.1f}"
        f" {report['loop_fps']:9.1f} {report['stage_ms']['infer']:9.2f}"
        f" {report['loop_over_bound']:11.2f}"
        for report in reports
    ]
    return "\n".join(lines)


def format_report(report: dict) -> str:
    cameras = report["cameras"]
    lines = [
        f"model {report['model']} on {report['backend']}/{report['device']}",
        *(source_lines(report["model_source"]) if "model_source" in report else []),
        f"  video {report['video']}",
        f"  engine alone (throughput, no decode) {report['engine_fps']:8.1f} frames/s",
        f"  video decode alone                   {report['decode_fps']:8.1f} frames/s",
        f"  serial bound 1/(1/engine+1/decode)   {report['bound_fps']:8.1f} frames/s",
        f"  whole loop, every frame to MQTT      {report['loop_fps']:8.1f} frames/s"
        + (f" ({len(cameras)} cameras)" if len(cameras) > 1 else ""),
        f"  loop / bound {report['loop_over_bound']:.2f}"
        f"   loop / engine {report['loop_over_engine']:.2f}",
        "  per-frame stage ms: "
        + "  ".join(f"{stage} {report['stage_ms'][stage]:.2f}" for stage in STAGES),
    ]
    if len(cameras) > 1:
        lines += [f"    camera {name:<16} {cam['fps']:8.1f} frames/s  p95 "
                  f"{cam['p95_ms'] or 0:.1f} ms" for name, cam in cameras.items()]
    lines.append(f"  published {report['published']}  acknowledged {report['acknowledged']}"
                 f"  dropped {report['dropped']}  max RSS {report['max_rss_mib']:.0f} MiB")
    sections = {section.name: section for section, _ in chosen_all()}
    for name, figures in report["sections"].items():
        lines.append(sections[name].function("format")(figures))
    return "\n".join(lines)


def chosen_all() -> list:
    """Every declared section, for formatting whatever the report holds."""
    return chosen(argparse.Namespace(all=True))
