"""The `--config` option every subcommand shares: one default, one missing-file message."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/edge-agent/agent.yaml")
"""Where scripts/install puts the config and where the service reads it."""


def add_config_option(parser: argparse.ArgumentParser, what: str = "agent YAML file") -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"{what} (default: {DEFAULT_CONFIG})")


def missing_default_config(args: argparse.Namespace) -> str | None:
    """What to say when --config was left at its default and that file is not there."""
    config = getattr(args, "config", None) or getattr(args, "file", None)  # check-config FILE
    if config != DEFAULT_CONFIG or config.exists():
        return None
    return (
        f"no config file at {DEFAULT_CONFIG} (the default of --config)\n"
        "  fix: pass --config FILE (configs/agent.yaml is the commented reference), or\n"
        "  install one there: sudo scripts/install, or\n"
        f"  sudo install -D -m 644 configs/agent.yaml {DEFAULT_CONFIG}"
    )
