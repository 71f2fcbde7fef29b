"""`edge-agent reload`: validate a config, signal the running agent, report the outcome.

The agent writes its pid and each reload's outcome to the state directory, so the
command works the same under systemd (where `systemctl reload` also works) and without.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from edge_agent.service.state_files import PID_FILE, RELOAD_FILE, running_pid
from edge_agent.tools.options import add_config_option

log = logging.getLogger(__name__)

def reload_agent(config_path: Path, timeout: float) -> int:
    """0: applied; 1: the agent rejected it or is not running; 2: the file is invalid."""
    from edge_agent.config.loader import check_config, load_config

    result = check_config(config_path)
    if not result.ok:
        print(result.text, file=sys.stderr)
        print("not reloaded: the running agent keeps its config", file=sys.stderr)
        return 2
    state_dir = load_config(config_path).state_dir
    pid = running_pid(state_dir)
    if pid is None:
        print(f"no running edge-agent found (pid file {state_dir / PID_FILE})", file=sys.stderr)
        return 1
    outcome_file = state_dir / RELOAD_FILE
    before = outcome_file.stat().st_mtime_ns if outcome_file.exists() else 0
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outcome_file.exists() and outcome_file.stat().st_mtime_ns != before:
            outcome = json.loads(outcome_file.read_text())
            if outcome["ok"]:
                print("reloaded: " + ("; ".join(outcome["applied"]) or "nothing changed"))
                return 0
            print(f"reload rejected, the old config keeps running:\n{outcome['error']}",
                  file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"sent SIGHUP to pid {pid}, no outcome within {timeout:g}s; see the journal",
          file=sys.stderr)
    return 1


def _reload(args: argparse.Namespace) -> int:
    return reload_agent(args.config, args.timeout)


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reload", help="check a config file, then make the running agent apply it"
    )
    add_config_option(parser)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    parser.set_defaults(handler=_reload)
