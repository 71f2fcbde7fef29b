"""The `commands:` section: the MQTT command channel (docs/commands.md).

Off by default. `enabled: true` alone answers the commands that only read (SAFE_COMMANDS);
a command that changes the box answers only when `allow` names it, so turning the
channel on can never let someone restart cameras or replace the model by accident.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from edge_agent.config.rules import Strict

SAFE_COMMANDS = frozenset({"snapshot", "health/now", "model/list", "config/get"})
"""Commands that only read: they answer whenever the channel is enabled."""
BOX_CHANGING_COMMANDS = frozenset({"reload", "camera/restart", "model/deploy", "model/rollback"})
"""Commands that change what the box runs: each must be named in `commands.allow`."""
KNOWN_COMMANDS = SAFE_COMMANDS | BOX_CHANGING_COMMANDS
"""Every command name; edge_agent.commands' registry must declare exactly these (tested)."""


class CommandsConfig(Strict):
    """Commands over MQTT on `<prefix>/<device_id>/cmd/<name>`, results on `.../result`."""

    enabled: bool = Field(
        False, description="true: subscribe to cmd/# and answer; false: no subscription."
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Commands that change the box and may run (reload, camera/restart, "
        "model/deploy, model/rollback); the read-only ones need no entry.",
    )
    max_payload_bytes: int = Field(
        65536, ge=256, le=16 * 1024 * 1024,
        description="Larger requests are rejected unread (before JSON parsing).",
    )
    dedupe_hours: float = Field(
        24.0, gt=0, le=24 * 30,
        description="How long a request_id is remembered (across restarts) so a "
        "redelivered or repeated request runs once.",
    )
    dedupe_max_entries: int = Field(
        10000, ge=100, le=1_000_000,
        description="Most request ids remembered; the oldest are forgotten first.",
    )
    allowed_paths: list[Path] = Field(
        default_factory=list,
        description="Absolute folders that path arguments (model/deploy) may point into; "
        "anything else is rejected.",
    )

    @field_validator("allow")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in KNOWN_COMMANDS:
                raise ValueError(
                    f"unknown command {name!r}; allowed: {', '.join(sorted(KNOWN_COMMANDS))}"
                )
        return names

    @field_validator("allowed_paths")
    @classmethod
    def _absolute(cls, folders: list[Path]) -> list[Path]:
        for folder in folders:
            if not folder.is_absolute():
                raise ValueError(f"{str(folder)!r} is relative; give an absolute folder")
        return folders

    def permits(self, name: str, changes_box: bool) -> bool:
        """True when command `name` may run: read-only, or named in `allow`."""
        return self.enabled and (not changes_box or name in self.allow)
