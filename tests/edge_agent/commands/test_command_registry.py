"""The registry, the config's list of names and the request schema say the same."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from edge_agent.commands import Command, NoArgs, Reply
from edge_agent.commands.registry import Registry, default_registry
from edge_agent.config.commands import BOX_CHANGING_COMMANDS, KNOWN_COMMANDS, CommandsConfig
from tests.helpers import REPO

REQUEST_SCHEMA = json.loads((REPO / "docs/schemas/command-request.schema.json").read_text())


def test_every_command_is_known_to_the_config_and_classed_alike() -> None:
    for command in default_registry():
        assert command.name in KNOWN_COMMANDS
        assert command.changes_box == (command.name in BOX_CHANGING_COMMANDS), command.name


def test_the_request_schema_describes_each_command_s_arguments() -> None:
    for command in default_registry():
        declared = REQUEST_SCHEMA["$defs"][command.name]
        assert set(declared["properties"]) == {"request_id", *command.args.model_fields}
        assert declared["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(REQUEST_SCHEMA)
    jsonschema.validate({"request_id": "r-1"}, REQUEST_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"request_id": "a b"}, REQUEST_SCHEMA)


def test_a_name_twice_or_a_name_no_topic_takes_is_refused() -> None:
    def handler(_call: object) -> Reply:
        return Reply.ok()

    registry = Registry([Command("snapshot", handler, "x")])
    with pytest.raises(ValueError, match="twice"):
        registry.register(Command("snapshot", handler, "x"))
    for bad in ("", "Snap", "a/+", "a/#", "x/result", "a b", "a//b", "/a"):
        with pytest.raises(ValueError, match="not a valid topic part"):
            Command(bad, handler, "x", NoArgs)


@pytest.mark.parametrize(("section", "name", "changes_box", "permitted"), [
    ({}, "snapshot", False, False),
    ({"enabled": True}, "snapshot", False, True),
    ({"enabled": True}, "reload", True, False),
    ({"enabled": True, "allow": ["reload"]}, "reload", True, True),
    ({"enabled": True, "allow": ["reload"]}, "camera/restart", True, False),
])
def test_enabled_answers_safe_commands_and_allow_the_rest(section: dict, name: str,
                                                          changes_box: bool,
                                                          permitted: bool) -> None:
    assert CommandsConfig.model_validate(section).permits(name, changes_box) is permitted


@pytest.mark.parametrize("section", [
    {"allow": ["rm"]}, {"allowed_paths": ["relative/dir"]}, {"max_payload_bytes": 10},
    {"enabled": "maybe"}, {"dedupe_hours": 0}, {"unknown": 1},
])
def test_bad_commands_sections_are_refused(section: dict) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (pydantic's message is checked elsewhere)
        CommandsConfig.model_validate(section)


def test_the_commented_example_in_agent_yaml_is_valid() -> None:
    text = (REPO / "configs" / "agent.yaml").read_text()
    block = text.split("# commands:\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.removeprefix("#   ") for line in block.splitlines()]
    section = yaml.safe_load("\n".join(line for line in lines if not line.startswith("#")))
    config = CommandsConfig.model_validate(section)
    assert config.enabled
    assert config.allow == ["reload", "camera/restart"]
