"""The optional sections of `edge-agent bench`, each behind its own flag; `--all` runs all.

A section is declared here (cheap to import: the CLI builds its flags from this list)
and implemented in its own module as `run(context) -> dict` and `format(figures) -> str`,
named as "module:function" and imported only when the section runs. Its figures land
in the report under its name. To add one: a Section entry here, a module beside bench.py.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BROKERS = ("private", "config")
"""--broker: a throwaway Mosquitto started here, or the one the config names."""


@dataclass(frozen=True)
class Section:
    name: str
    """The flag (--NAME) and the report key."""
    help: str
    run: str
    """"module:function" taking the BenchContext, returning the section's figures."""
    format: str
    """"module:function" turning those figures into the text report's lines."""
    value: str | None = None
    """A flag that takes an optional value: this is the value of a bare --NAME (and of
    --all); None: a plain on/off flag."""

    @property
    def dest(self) -> str:
        return "section_" + self.name.replace("-", "_")

    def function(self, which: str) -> Callable[..., Any]:
        module_name, _, name = getattr(self, which).partition(":")
        found: Callable[..., Any] = getattr(importlib.import_module(module_name), name)
        return found


SECTIONS: list[Section] = [
    Section(
        "cameras",
        "1, 2 and 4 cameras of the same video on one engine (or the counts given, e.g. "
        "--cameras 1,8): total frames/s, per camera, p95 latency, with and without "
        "cross-camera batching",
        "edge_agent.tools.bench_cameras:run", "edge_agent.tools.bench_cameras:format_figures",
        value="1,2,4",
    ),
    Section(
        "input-shapes",
        "square vs rectangular input on a 16:9 clip of the video, and start-up to the "
        "first detection with a cold and a warm compiled-model cache",
        "edge_agent.tools.bench_input:run", "edge_agent.tools.bench_input:format_input_report",
    ),
    Section(
        "int8",
        "OpenVINO FP against an INT8 build made from the video (NNCF, the backend's int8_* "
        "settings; minutes the first time, then kept): engine and loop fps, guard F1",
        "edge_agent.tools.bench_int8:run", "edge_agent.tools.bench_int8:format_figures",
    ),
    Section(
        "motion",
        "the motion gate off vs on, on a clip with still stretches made from the video: "
        "inferences, CPU seconds, detections kept",
        "edge_agent.tools.bench_motion:run", "edge_agent.tools.bench_motion:format_figures",
    ),
    Section(
        "events-cost",
        "tracking + zones + lines CPU ms per frame at 1, 20 and 100 objects, and the share "
        "of one inference",
        "edge_agent.tools.bench_events:run", "edge_agent.tools.bench_events:format_figures",
    ),
    Section(
        "stages",
        "the host's CPU ms per frame, stage by stage (decode, letterbox, postprocess, JSON, "
        "spool write, the whole publish path) and its share of the cores at the bound rate",
        "edge_agent.tools.bench_stages:run", "edge_agent.tools.bench_stages:format_figures",
    ),
]


def add_section_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per section, and --all."""
    for section in SECTIONS:
        if section.value is None:
            parser.add_argument(f"--{section.name}", dest=section.dest, action="store_true",
                                help=section.help)
        else:
            parser.add_argument(f"--{section.name}", dest=section.dest, nargs="?",
                                const=section.value, metavar="VALUE",
                                help=f"{section.help} (default: {section.value})")
    parser.add_argument("--all", action="store_true", help="run every section above")


def chosen(args: argparse.Namespace) -> list[tuple[Section, Any]]:
    """(section, its flag's value) for each section to run, in SECTIONS order."""
    picked = []
    for section in SECTIONS:
        value = getattr(args, section.dest, None)
        if not value and getattr(args, "all", False):
            value = section.value or True
        if value:
            picked.append((section, value))
    return picked
