"""The agent's small exception hierarchy."""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent's own errors (engine errors come from `engines.errors`)."""


class ConfigError(AgentError):
    """The configuration file is invalid; the message names file, line, key and fix."""

    def __init__(
        self, message: str, problems: list[str] | None = None, count: int | None = None
    ) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.count = count if count is not None else len(self.problems)
        """How many problems the file has; `problems` may show only the first ones."""


class SourceError(AgentError):
    """A camera source cannot be opened or stopped delivering frames."""
