"""The model commands: model/deploy, model/rollback, model/list (docs/models.md).

Thin: arguments are checked here (types, the URL and path rules), the work is
edge_agent.models.lifecycle's. Each final result carries `schema_version`
(docs/schemas/model-result.schema.json); progress steps are listed in docs/models.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from edge_agent.commands.paths import allowed_path
from edge_agent.commands.spec import (
    SLUG_FIELD,
    Args,
    Call,
    Code,
    Command,
    FailedError,
    NoArgs,
    RejectedError,
    Reply,
)
from edge_agent.models.acquire import DeployRequest
from edge_agent.models.fetch import FetchError, check_url
from edge_agent.models.lifecycle import LifecycleError
from edge_agent.models.manifest import CONFIG_MODEL

RESULT_VERSION = 1
SHA256_FIELD = r"^[0-9a-f]{64}$"
VERSION_FIELD = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
CODES = {"busy": Code.BUSY, "not_found": Code.NOT_FOUND, "unavailable": Code.UNAVAILABLE}


class DeployArgs(Args):
    sha256: str = Field(pattern=SHA256_FIELD, description="Expected sha256 (lower-case hex).")
    url: str | None = Field(None, max_length=2048, description="http(s) URL on the site LAN.")
    path: str | None = Field(None, max_length=4095,
                             description="A file inside commands.allowed_paths.")
    name: str | None = Field(None, pattern=SLUG_FIELD, description="Default: the file stem.")
    version: str | None = Field(None, pattern=VERSION_FIELD, description="Free version text.")
    labels: list[Label] | None = Field(
        None, min_length=1, max_length=10_000,
        description="Class names in class-id order; default: the config's model.labels.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DeployArgs:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url and path")
        return self


class RollbackArgs(Args):
    to: str | None = Field(
        None, pattern=rf"{SHA256_FIELD[:-1]}|^{CONFIG_MODEL}$",
        description="A kept version's sha256, or 'config'; default: the previous version.",
    )


def _raise(error: LifecycleError) -> None:
    """A model that is not acceptable (hash, format, validation) is a bad argument."""
    kind = RejectedError if error.rejected else FailedError
    code = CODES.get(error.kind, Code.ERROR)
    if error.rejected and error.kind == "error":
        code = Code.BAD_ARGUMENTS
    raise kind(error.reason, code, schema_version=RESULT_VERSION, **error.fields) from error


def deploy(call: Call) -> Reply:
    """Fetch, verify, load beside, validate, swap, watch; the final outcome."""
    args: DeployArgs = call.args
    path = allowed_path(args.path, call.config.allowed_paths) if args.path else None
    if args.url is not None:
        try:
            check_url(args.url)
        except FetchError as exc:
            raise RejectedError(str(exc), Code.BAD_ARGUMENTS) from exc
    request = DeployRequest(sha256=args.sha256, url=args.url, path=path, name=args.name,
                            version=args.version,
                            labels=tuple(args.labels) if args.labels else None)
    try:
        result: dict[str, Any] = call.box.models.deploy(request, call.progress, call.stopping)
    except LifecycleError as exc:
        _raise(exc)
    return Reply.ok(schema_version=RESULT_VERSION, **result)


def rollback(call: Call) -> Reply:
    """Back to the previous kept version, or to the one named."""
    args: RollbackArgs = call.args
    try:
        result = call.box.models.rollback(args.to, call.progress)
    except LifecycleError as exc:
        _raise(exc)
    return Reply.ok(schema_version=RESULT_VERSION, **result)


def listing(call: Call) -> Reply:
    """Every version the manifest knows, newest first; active and previous."""
    return Reply.ok(schema_version=RESULT_VERSION, **call.box.models.listing())


COMMANDS = [
    Command("model/deploy", deploy, "Deploy a model version (url or path, sha256)",
            args=DeployArgs, changes_box=True, max_payload=1024 * 1024),
    Command("model/rollback", rollback, "Go back to the previous (or a named) model version",
            args=RollbackArgs, changes_box=True),
    Command("model/list", listing, "List model versions, the active and previous one",
            args=NoArgs),
]
