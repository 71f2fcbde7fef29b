"""The options the subcommands share: `--config` (one default, one missing-file message)
and `--config-model` (which model a tool loads: edge_agent.models.running)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.config.model import AgentConfig
    from edge_agent.models.running import RunningModel

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


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """The tools load the model the box runs (a deployed version when there is one); this
    asks for the config's model.path instead, e.g. to check a new file before a restart."""
    parser.add_argument("--config-model", action="store_true",
                        help="load the config's model.path even when a deployed model "
                        "version runs (default: the model the agent runs; docs/tools.md)")


def model_for(config: AgentConfig, args: argparse.Namespace) -> RunningModel:
    """The model a tool loads for these arguments (edge_agent.models.running)."""
    from edge_agent.models.running import running_model

    return running_model(config, use_config=bool(getattr(args, "config_model", False)))


def source_lines(model_source: dict[str, Any], indent: str = "  ") -> list[str]:
    """The lines every tool prints under its model: which model and why, then any note
    (`model_source` is RunningModel.to_json(), as the JSON outputs carry it)."""
    return [f"{indent}model from: {model_source['source']}",
            *(f"{indent}note: {note}" for note in model_source["notes"])]
