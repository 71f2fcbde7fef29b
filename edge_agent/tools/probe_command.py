"""`edge-agent probe`: what hardware and runtimes this box has, and what `auto` picks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_agent.selection.probe import probe
from edge_agent.selection.report import format_table

log = logging.getLogger(__name__)


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("probe", help="show the hardware and runtimes found here")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="read /proc, /sys and /etc under this folder (recorded trees)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_probe_command)


def _probe_command(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        print(f"edge-agent probe: --root {args.root} is not a folder", file=sys.stderr)
        return 2
    from edge_agent.config.model import AutoBackend
    from edge_agent.selection.policy import candidates, passed_over

    report = probe(args.root)
    order = [f"{c.backend}/{c.device}" if c.device else c.backend
             for c in candidates(AutoBackend(), report)]
    skipped = passed_over(AutoBackend(), report)
    if args.json:
        print(json.dumps({**report.to_dict(), "auto_order": order, "passed_over": skipped},
                         indent=2))
        return 0
    lines = [format_table(report), f"backend auto tries: {', '.join(order)}"]
    lines += [f"  not tried: {note}" for note in skipped]
    print("\n".join(lines))
    return 0
