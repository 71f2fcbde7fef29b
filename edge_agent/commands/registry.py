"""The command registry: name -> `Command`, the one list the channel dispatches from."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from edge_agent.commands.spec import Command


class Registry:
    """Commands by name. `register` refuses a name twice: one command, one handler."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.register(command)

    def register(self, command: Command) -> Command:
        if command.name in self._commands:
            raise ValueError(f"command {command.name!r} is registered twice")
        self._commands[command.name] = command
        return command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: object) -> bool:
        return name in self._commands


COMMAND_MODULES = ("edge_agent.commands.builtin", "edge_agent.models.commands")
"""Modules that declare `COMMANDS: list[Command]`; the model lifecycle adds its own here.
Imported when the channel starts, never swallowed: a broken module fails the start."""


def default_registry() -> Registry:
    """Every command the agent answers, from COMMAND_MODULES in order."""
    registry = Registry()
    for module_name in COMMAND_MODULES:
        for command in importlib.import_module(module_name).COMMANDS:
            registry.register(command)
    return registry
