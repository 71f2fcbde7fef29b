"""`edge-agent quantize`: build and judge an INT8 model of the box's model, on this box.

The model is the one the box runs (a deployed version when there is one; `--config-model`:
the config's model.path): the build is keyed on that model's sha256, so the agent finds
it for the model it loads. NNCF post-training quantization calibrated on the first
frames of the config's cameras (or `--images DIR`), then the accuracy guard on frames
held back from calibration (engines/int8_guard.py). The build goes where the agent looks
for it (state_dir/int8/), so a later start with `backend.precision: int8` uses it without
quantizing again.
Exit status: 0 passed, 3 refused (kept for inspection, not used), 1 failed, 2 bad config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_agent.tools.options import add_config_option, add_model_option, model_for, source_lines

REFUSED = 3


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quantize", help="build an INT8 model with NNCF and check it against the FP model",
        description="Quantize the model the box runs (a deployed version, else the config's "
        "model) to INT8 (NNCF), compare its detections with the FP model's on frames held "
        "back from calibration, and cache the build for backend.precision: int8. Settings "
        "default to the config's backend section.",
    )
    add_config_option(parser, "agent YAML (model, cameras, state_dir, backend)")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="calibrate and check on these images instead of the cameras")
    parser.add_argument("--frames", type=int, metavar="N",
                        help="calibration frames (default: backend.int8_calibration_frames)")
    parser.add_argument("--check-frames", type=int, metavar="M",
                        help="held-back frames (default: backend.int8_check_frames)")
    parser.add_argument("--min-f1", type=float, help="pass threshold (default: "
                        "backend.int8_min_f1)")
    parser.add_argument("--preset", choices=["mixed", "performance"],
                        help="NNCF preset (default: backend.int8_preset)")
    parser.add_argument("--force", action="store_true",
                        help="quantize again even when a build with these settings exists")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_model_option(parser)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import shutil

    from edge_agent.config.loader import load_config
    from edge_agent.config.model import BACKEND_SECTIONS
    from edge_agent.selection import int8
    from edge_agent.selection.loading import model_options
    from engines import registry
    from engines.detector import check_model
    from engines.int8_cache import build_dir, read_record

    running = model_for(load_config(args.config), args)  # a deployed version, if one runs
    config = running.config
    if not args.json:  # a build takes a while: say first which model it is of
        print("\n".join(["quantizing", *source_lines(running.to_json())]), flush=True)
    base = config.backend if getattr(config.backend, "type", "") == "openvino" else None
    overrides = {key: value for key, value in (
        ("int8_calibration_frames", args.frames), ("int8_check_frames", args.check_frames),
        ("int8_min_f1", args.min_f1), ("int8_preset", args.preset)) if value is not None}
    settings = BACKEND_SECTIONS["openvino"].model_validate(
        {**(base.model_dump() if base is not None else {"type": "openvino"}), **overrides})
    config = config.model_copy(update={"backend": settings})
    declared = registry.get("openvino")
    fp = registry.open_engine("openvino", config.model.path, **model_options(config.model),
                              **declared.options(settings, config.state_dir))
    try:
        check_model(fp)
        folder = build_dir(config.state_dir, int8.calibration_of(settings).key(fp.info.sha256))
        record = None if args.force else read_record(folder)
        if record is None:
            if folder.exists():
                shutil.rmtree(folder)
            if args.images is not None:
                frames, source = int8.image_frames(args.images), f"images {args.images}"
            else:
                wanted = settings.int8_calibration_frames + settings.int8_check_frames
                frames = int8.camera_frames(config.cameras, wanted)
                source = "cameras " + ", ".join(c.id for c in config.cameras if c.enabled)
            record = int8.build_now(config, fp, frames, source, folder)
            fresh = True
        else:
            fresh = False
    finally:
        fp.close()
    passed, reason = record.judged(settings.int8_min_f1)
    if args.json:
        print(json.dumps({"passed": passed, "reason": reason, "build": str(folder),
                          "reused": not fresh, **record.to_json(),
                          "model_source": running.to_json()}, indent=2))
    else:
        print(_words(passed, reason, folder, fresh, record.build_s))
    return 0 if passed else REFUSED


def _words(passed: bool, reason: str, folder: Path, fresh: bool, build_s: float) -> str:
    how = f"built in {build_s:.0f} s" if fresh else "already built (--force builds again)"
    if passed:
        return (f"INT8 build PASSED: {reason}\n  {folder} ({how})\n"
                "  with backend.precision: int8 the agent runs it from its next start")
    return (f"INT8 build REFUSED: {reason}\n  {folder} ({how}), kept for inspection, not "
            "used: with backend.precision: int8 the agent stays on the FP model\n"
            "  try more or more varied calibration frames (--frames, --images), the "
            "mixed preset, or a lower int8_min_f1 if the loss is acceptable")
