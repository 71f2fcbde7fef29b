"""Commands over MQTT: requests on `<prefix>/<device_id>/cmd/<name>`, one final result
each on `<prefix>/<device_id>/cmd/<name>/result` (docs/commands.md).

The API for whoever adds a command
----------------------------------
Declare it (edge_agent.commands.spec) in a module with a `COMMANDS` list, and name that
module in `registry.COMMAND_MODULES`::

    class DeployArgs(Args):                   # pydantic, strict, unknown keys refused
        url: str | None = None
        path: str | None = None
        sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def deploy(call: Call) -> Reply:
        source = allowed_path(call.args.path, call.config.allowed_paths)  # paths.py
        call.progress("downloading", received=0, total=size)   # intermediate result
        ...
        if bad:
            raise RejectedError("sha256 does not match", Code.BAD_ARGUMENTS)  # or FailedError(...)
        return Reply.ok(version="v3", previous="v2")   # fields published under "result"

    COMMANDS = [Command("model/deploy", deploy, "Deploy a model version",
                        args=DeployArgs, changes_box=True, max_payload=4096)]

- `Command(name, handler, summary, args=NoArgs, changes_box=False, max_payload=None)`:
  `changes_box=True` runs only when `commands.allow` names it (config/commands.py lists
  every known name in KNOWN_COMMANDS; a test checks the registry matches it).
  `max_payload` (bytes) tightens `commands.max_payload_bytes` for this command.
- The handler gets a `Call`: `request` (name, request_id, received_at), `args` (the
  validated `Args` instance), `box` (a `Box`, commands/box.py: the only way to the agent;
  the model lifecycle adds the methods it needs there and in
  edge_agent/service/agent_box.py), `progress` (`progress(step, **fields)` publishes
  outcome `progress` with `step` and `result: fields` on the result topic at once) and
  `config` (the `commands:` section) and `stopping` (an Event set at shutdown).
- It returns a `Reply` (`Reply.ok(**fields)`, `Reply.rejected(reason, code, ...)`,
  `Reply.failed(reason, code, ...)`) or raises `RejectedError`/`FailedError(reason,
  code, **fields)`.
  Any other exception becomes `failed` with code `error` and the exception's text,
  redacted; the agent goes on.
- Handlers run in their own thread (`command-<name>`), never on MQTT's network thread;
  at most one per command name at a time (another request meanwhile: `rejected`, code
  `busy`); different commands run side by side. A handler may block for minutes.
- Results: `{"request_id", "command", "outcome": ok|rejected|failed|progress, "code",
  "reason", "duplicate", "received_at", "started_at", "finished_at", "duration_ms",
  "result": {...}}` (docs/schemas/command-result.schema.json). The channel stores the
  final result under the request_id (dedupe.py) before sending it: a repeated
  request_id is answered with the stored result and `"duplicate": true`, never run again.
"""

from __future__ import annotations

from edge_agent.commands.box import Box, LatestFrame
from edge_agent.commands.paths import allowed_path
from edge_agent.commands.spec import (
    Args,
    Call,
    Code,
    Command,
    CommandError,
    FailedError,
    NoArgs,
    Outcome,
    Progress,
    RejectedError,
    Reply,
    Request,
)

__all__ = [
    "Args", "Box", "Call", "Code", "Command", "CommandError", "FailedError", "LatestFrame",
    "NoArgs", "Outcome", "Progress", "RejectedError", "Reply", "Request", "allowed_path",
]
