"""What a command is: its declaration, its validated arguments, the call a handler gets,
and the reply it gives. The API is described in `edge_agent.commands` (the package doc)."""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from edge_agent.commands.box import Box
from edge_agent.config.commands import CommandsConfig
from edge_agent.config.rules import SLUG

COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}(/[a-z][a-z0-9_-]{0,31}){0,2}$")
"""`snapshot`, `health/now`, `model/deploy`: what may follow `cmd/` in a topic."""
SLUG_FIELD = SLUG
"""Pattern for an id argument (camera id): as the config's ids."""


class Outcome(enum.Enum):
    """A result message's `outcome` (docs/schemas/command-result.schema.json)."""

    OK = "ok"
    REJECTED = "rejected"
    """Not run: the request was refused (bad input, not allowed, busy)."""
    FAILED = "failed"
    """Run, and it did not work."""
    PROGRESS = "progress"
    """An intermediate step of a long command; the final message follows."""


class Code(enum.Enum):
    """Why a request was rejected or failed: `code` in the result, stable for programs."""

    MALFORMED = "malformed"  # not UTF-8 JSON
    NOT_OBJECT = "not_object"  # JSON, but not an object
    BAD_REQUEST_ID = "bad_request_id"  # missing, not a string, or not 1-128 printable chars
    RETAINED = "retained"  # sent with the retain flag: it would run again for each new session
    UNKNOWN_COMMAND = "unknown_command"
    NOT_ALLOWED = "not_allowed"  # changes the box and is not in commands.allow
    BAD_ARGUMENTS = "bad_arguments"  # unknown argument, wrong type, out of range
    TOO_LARGE = "too_large"  # over max_payload_bytes, refused before parsing
    PATH_NOT_ALLOWED = "path_not_allowed"  # a path outside commands.allowed_paths
    BUSY = "busy"  # the same command is running now
    NOT_FOUND = "not_found"  # the thing named (camera, model version) does not exist
    UNAVAILABLE = "unavailable"  # the box cannot do it now (no frame yet, shutting down)
    INTERRUPTED = "interrupted"  # the agent stopped while it ran; never run again
    ERROR = "error"  # the command ran and failed (the reason says how)


class Args(BaseModel):
    """Base of a command's arguments: unknown keys and type coercion are refused
    ("5" is not 5; 1.0 is not a camera id), so a typo never runs with a default."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoArgs(Args):
    """A command that takes no arguments (any key is an unknown argument)."""


@dataclass(frozen=True)
class Request:
    """One validated request as the handler sees it."""

    name: str
    request_id: str
    received_at: float
    """Unix time the message reached the agent."""


class Progress(Protocol):
    """Publishes an intermediate result now: `progress("downloading", bytes=1024)`
    sends outcome `progress`, `step`, and the fields under `result`. Never raises."""

    def __call__(self, step: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class Call:
    """Everything a handler gets: the request, its validated arguments, the box."""

    request: Request
    args: Any
    """An instance of the command's `args` type (an `Args` subclass)."""
    box: Box
    progress: Progress
    config: CommandsConfig
    stopping: threading.Event
    """Set when the agent is stopping: a long handler returns (or fails) soon."""


class CommandError(Exception):
    """Raised by a handler to end with `rejected` or `failed` and a reason."""

    outcome: ClassVar[Outcome] = Outcome.FAILED

    def __init__(self, reason: str, code: Code = Code.ERROR, **fields: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.fields = fields


class RejectedError(CommandError):
    """The request is refused before it changed anything (bad value, unknown camera)."""

    outcome = Outcome.REJECTED

    def __init__(self, reason: str, code: Code = Code.BAD_ARGUMENTS, **fields: Any) -> None:
        super().__init__(reason, code, **fields)


class FailedError(CommandError):
    """The command ran and did not work."""


@dataclass(frozen=True)
class Reply:
    """A handler's final word; the channel adds request_id, timing and `duplicate`."""

    outcome: Outcome = Outcome.OK
    reason: str | None = None
    code: Code | None = None
    result: dict[str, Any] = field(default_factory=dict)
    """Command-specific fields; JSON-encodable (published under `result`)."""

    @classmethod
    def ok(cls, **result: Any) -> Reply:
        return cls(Outcome.OK, None, None, result)

    @classmethod
    def rejected(cls, reason: str, code: Code, **result: Any) -> Reply:
        return cls(Outcome.REJECTED, reason, code, result)

    @classmethod
    def failed(cls, reason: str, code: Code = Code.ERROR, **result: Any) -> Reply:
        return cls(Outcome.FAILED, reason, code, result)

    @classmethod
    def from_error(cls, error: CommandError) -> Reply:
        return cls(error.outcome, error.reason, error.code, dict(error.fields))


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Command:
    """One command's declaration (registered in edge_agent.commands.registry)."""

    name: str
    """The topic part after `cmd/`: `snapshot`, `model/deploy`."""
    handler: Handler
    summary: str
    """One line for docs and the unknown-command reason."""
    args: type[Args] = NoArgs
    changes_box: bool = False
    """True: runs only when `commands.allow` names it."""
    max_payload: int | None = None
    """Largest request in bytes; None: `commands.max_payload_bytes`."""

    def __post_init__(self) -> None:
        if not COMMAND_NAME.match(self.name) or self.name.endswith("/result"):
            raise ValueError(f"command name {self.name!r} is not a valid topic part")
