"""The `edge-agent` command: run, check-config, bench, --version, and the tool commands.

Tool commands live in their own modules (COMMAND_MODULES); each defines
`add_command(commands)` that adds its subparser with `handler` set, and imports its
heavy dependencies only inside the handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_agent import __version__
from edge_agent.errors import AgentError, ConfigError
from edge_agent.redact import redact
from edge_agent.service.logs import quiet_opencv_log, setup_logging
from edge_agent.tools.bench_sections import BROKERS, add_section_arguments
from edge_agent.tools.options import (
    DEFAULT_CONFIG,
    add_config_option,
    add_model_option,
    missing_default_config,
    model_for,
)
from engines import registry
from engines.errors import EngineError
from engines.file_metadata import unreadable

log = logging.getLogger("edge_agent")


COMMAND_MODULES: tuple[str, ...] = (
    "edge_agent.tools.reload_command",
    "edge_agent.tools.probe_command",
    "edge_agent.tools.doctor",
    "edge_agent.tools.snapshot",
    "edge_agent.tools.watch",
    "edge_agent.tools.models",
    "edge_agent.tools.quantize",
)
"""Modules that each add one subcommand with `add_command(commands)`."""

def _run(args: argparse.Namespace) -> int:
    from edge_agent.config.loader import load_config
    from edge_agent.service.agent import Agent

    config = load_config(args.config)
    setup_logging(args.log_level or config.log_level)
    quiet_opencv_log(args.log_level or config.log_level)
    agent = Agent(config, args.config)
    agent.signals.install()
    return agent.run()


def _check_config(args: argparse.Namespace) -> int:
    from edge_agent.camera_filter import labels_check
    from edge_agent.config.loader import check_config, load_config

    result = check_config(args.file)
    text, ok = result.text, result.ok
    if ok:  # class names against the running model's labels, as the agent checks them
        try:
            running = model_for(load_config(args.file), args)
            shown = [] if not running.deployed and not running.notes else [
                f"  runs:    {running.source()}", *(f"  note:    {n}" for n in running.notes)]
            if running.config.model.labels is not None:  # else labels_check reads the file
                damaged = unreadable(Path(running.config.model.path))
                if damaged:
                    shown.append(f"  warning: {damaged}: run would refuse it (doctor loads it)")
            text = "\n".join([text, *shown, *labels_check(running.config, args.file)])
        except ConfigError as error:
            count = error.count
            text, ok = f"{error}\n{args.file}: {count} problem{'s' * (count != 1)}", False
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 2


def _bench(args: argparse.Namespace) -> int:
    from edge_agent.tools.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent", description="On-device capture -> infer -> publish over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the agent")
    add_config_option(run)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", type=Path, nargs="?", default=DEFAULT_CONFIG,
                       help=f"agent YAML file (default: {DEFAULT_CONFIG})")
    add_model_option(check)
    check.set_defaults(handler=_check_config)

    bench = commands.add_parser("bench", help="measure engine, decode and the whole loop")
    add_config_option(bench, "agent YAML (model, backend)")
    bench.add_argument("--video", type=Path, help="video to decode; default: first file camera")
    bench.add_argument("--seconds", type=float, default=10.0,
                       help="length of each of the 3 measurements (default: %(default)s s)")
    bench.add_argument("--backend", choices=[*(b.name for b in registry.declared()), "all"],
                       help="measure this backend instead of the config's; all: every "
                       "backend whose runtime is present here, side by side")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--broker", choices=BROKERS, default="private",
                       help="private: a throwaway Mosquitto on loopback (default); config: "
                       "the config's own broker, as device <device_id>-bench")
    add_section_arguments(bench)
    add_model_option(bench)
    bench.set_defaults(handler=_bench)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        setup_logging("info")
    problem = missing_default_config(args) if args.command != "doctor" else None
    if problem:  # the doctor reports a missing config as its first check instead
        print(f"edge-agent: {problem}", file=sys.stderr)
        return 2
    try:
        code = int(args.handler(args))
    except ConfigError as exc:
        print(f"edge-agent: invalid configuration\n{exc}", file=sys.stderr)
        code = 2
    except (AgentError, EngineError) as exc:
        print(f"edge-agent: {redact(str(exc))}", file=sys.stderr)
        code = 1
    if args.command == "run":  # its workers may still be in native code: see shutdown.py
        from edge_agent.service.shutdown import exit_status

        return exit_status(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
