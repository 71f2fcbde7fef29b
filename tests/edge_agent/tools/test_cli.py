"""Every subcommand that reads the agent's config defaults to the path the docs give."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edge_agent.cli import build_parser
from edge_agent.tools.doctor import DEFAULT_CONFIG as DOCTOR_DEFAULT
from edge_agent.tools.options import DEFAULT_CONFIG
from tests.helpers import REPO


def subcommands_with_config() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub for name, sub in commands.choices.items()
            if any("--config" in action.option_strings for action in sub._actions)}


def test_every_config_option_defaults_to_the_documented_path() -> None:
    found = subcommands_with_config()
    assert {"run", "bench", "doctor", "snapshot", "watch", "reload"} <= set(found)
    for name, sub in found.items():
        option = next(a for a in sub._actions if "--config" in a.option_strings)
        assert not option.required, name
        assert option.default == DEFAULT_CONFIG == DOCTOR_DEFAULT, name
        assert str(DEFAULT_CONFIG) in (option.help or ""), name
    assert "by default `/etc/edge-agent/agent.yaml`" in (REPO / "docs" / "config.md").read_text()
    assert build_parser().parse_args(["check-config"]).file == DEFAULT_CONFIG


@pytest.mark.parametrize("command", [["run"], ["bench"], ["watch"], ["reload"],
                                     ["snapshot", "gate"]])
def test_a_missing_default_config_is_one_clear_error(command: list[str]) -> None:
    if DEFAULT_CONFIG.exists():
        pytest.skip(f"{DEFAULT_CONFIG} exists on this machine")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *command], capture_output=True, text=True,
        timeout=60, cwd=REPO, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"edge-agent: no config file at {DEFAULT_CONFIG} (the default of --config)\n")
    assert "fix: pass --config FILE" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
