"""The model manifest: which versions the box holds, which one runs, how each one fared.

One JSON file, `<state_dir>/models/manifest.json`, rewritten whole and atomically (temp
file, fsync, rename, fsync of the folder), so a power cut leaves the old or the new
manifest, never half of one. A file that cannot be read is set aside (renamed
`manifest.json.corrupt-<time>`) with an ERROR line and the agent starts from the config's
model: a damaged manifest never stops the box. docs/models.md describes the format.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
CONFIG_MODEL = "config"
"""The reference that means "the model the config's `model.path` names"."""
MAX_HISTORY = 100
"""Entries kept in the manifest; the oldest that no longer have files go first."""


SHA256 = re.compile(r"[0-9a-f]{64}")
"""How the store names a version: its file's sha256 in lowercase hex."""


class Outcome(str, Enum):
    """How a version fared; docs/schemas/model-result.schema.json lists the same words."""

    PENDING = "pending"
    """Being fetched or checked (a power cut here leaves it pending, never active)."""
    PROBATION = "probation"
    """Active, under watch; a restart before the window ends goes back to the previous."""
    OK = "ok"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"


@dataclass
class ModelVersion:
    """One deployed model; `file` is relative to its folder `<models>/<sha256>/`."""

    sha256: str
    name: str
    version: str | None
    source: str
    file: str
    labels: list[str] | None = None
    added: str = ""
    activated: str | None = None
    outcome: Outcome = Outcome.PENDING
    reason: str | None = None
    replaced: str | None = None
    """The model that ran when this version was swapped in (a sha256 or CONFIG_MODEL): a
    restart during its probation goes back to exactly that one. None: never swapped in
    (or a manifest written before this field)."""

    def to_json(self) -> dict[str, object]:
        body = asdict(self)
        body["outcome"] = self.outcome.value
        return body

    @classmethod
    def from_json(cls, body: dict[str, object]) -> ModelVersion:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in body.items() if k in known}
        values["outcome"] = Outcome(str(values.get("outcome", "pending")))
        replaced = values.get("replaced")
        values["replaced"] = None if replaced is None else str(replaced)
        version = cls(**values)  # type: ignore[arg-type]
        if not (isinstance(version.sha256, str) and SHA256.fullmatch(version.sha256)
                and isinstance(version.file, str) and _plain_name(version.file)):
            # The store's folder is <sha256>/ and the file a name in it: anything else
            # (a path, '..') would point the agent and its tools outside the store.
            raise ValueError(f"bad version entry {body!r}")
        return version


def _plain_name(name: str) -> bool:
    """A file name alone (or '' while a deploy has not named it yet): no folder, no way
    up, nothing a path would read as one."""
    return (name not in (".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name)


@dataclass
class Manifest:
    """The whole file. `active`/`previous` hold a sha256 or CONFIG_MODEL; `previous` is
    None when there is nothing to roll back to. `config_model` is the config's model
    (path and sha256) when the active version was chosen: a different one at start or
    reload means the operator changed the config, which then wins (docs/models.md)."""

    active: str = CONFIG_MODEL
    previous: str | None = None
    config_model: dict[str, str] | None = None
    versions: list[ModelVersion] = field(default_factory=list)

    def find(self, sha256: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.sha256 == sha256), None)

    def put(self, version: ModelVersion) -> None:
        """Add or replace the entry with this sha256 (the newest goes last)."""
        self.versions = [v for v in self.versions if v.sha256 != version.sha256]
        self.versions.append(version)

    def rollback_targets(self, present: set[str]) -> list[str]:
        """Kept versions that ran well, most recently activated first, then the config."""
        good = [v for v in self.versions
                if v.outcome is Outcome.OK and v.sha256 != self.active and v.sha256 in present
                and v.activated]
        good.sort(key=lambda v: v.activated or "", reverse=True)
        targets = [v.sha256 for v in good]
        if self.active != CONFIG_MODEL:
            targets.append(CONFIG_MODEL)
        return targets

    def rollback_target(self, target: str | None, present: set[str]) -> str:
        """What model/rollback goes to: `target` (a sha256 or CONFIG_MODEL) when it is
        kept, else the first rollback target. LookupError: nothing there; ValueError: it
        is the active one already."""
        if target is None:
            targets = self.rollback_targets(present)
            if not targets:
                raise LookupError("nothing to roll back to: the config's model runs and no "
                                  "deployed version that ran well is kept")
            target = targets[0]
        if target == self.active:
            raise ValueError(f"{target[:12]} is already the active model")
        if target != CONFIG_MODEL and (self.find(target) is None or target not in present):
            raise LookupError(f"no kept model version {target}")
        return target

    def to_json(self) -> dict[str, object]:
        return {"schema_version": MANIFEST_VERSION, "active": self.active,
                "previous": self.previous, "config_model": self.config_model,
                "versions": [v.to_json() for v in self.versions]}

    @classmethod
    def from_json(cls, body: object) -> Manifest:
        if not isinstance(body, dict) or body.get("schema_version") != MANIFEST_VERSION:
            raise ValueError(f"not a version {MANIFEST_VERSION} manifest")
        versions = [ModelVersion.from_json(v) for v in body.get("versions", [])]
        active = str(body.get("active") or CONFIG_MODEL)
        previous = body.get("previous")
        config_model = body.get("config_model")
        return cls(active=active, previous=None if previous is None else str(previous),
                   config_model=config_model if isinstance(config_model, dict) else None,
                   versions=versions)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a power cut leaves the old or the new file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ManifestError(ValueError):
    """A manifest file that cannot be read as one (not JSON, another schema, a bad entry)."""


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, changing nothing: for readers that must not move files
    (the operator tools). FileNotFoundError when there is none, ManifestError when it is
    damaged, OSError when it cannot be read."""
    raw = path.read_bytes()
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ManifestError(str(exc)) from exc


def load_manifest(path: Path) -> Manifest:
    """The manifest at `path`; an empty one when there is none or it is damaged (then the
    damaged file is renamed aside and an ERROR is logged, never raised)."""
    try:
        return read_manifest(path)
    except FileNotFoundError:
        return Manifest()
    except ManifestError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        log.error("model manifest %s cannot be read (%s): set aside as %s; starting on the "
                  "config's model.path", path, exc, aside.name)
        return Manifest()


def save_manifest(path: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (see write_atomically)."""
    if len(manifest.versions) > MAX_HISTORY:
        manifest.versions = manifest.versions[-MAX_HISTORY:]
    text = json.dumps(manifest.to_json(), indent=1, ensure_ascii=False)
    write_atomically(path, text.encode("utf-8") + b"\n")


def describe(manifest: Manifest, ref: str | None) -> dict[str, Any] | None:
    """A version as info and results show it (docs/schemas/info.schema.json models)."""
    if ref is None:
        return None
    if ref == CONFIG_MODEL:
        model = manifest.config_model or {}
        return {"ref": CONFIG_MODEL, "name": None, "version": None,
                "sha256": model.get("sha256"), "path": model.get("path")}
    version = manifest.find(ref)
    return {"ref": ref, "name": version.name if version else None,
            "version": version.version if version else None, "sha256": ref, "path": None}


def outcome_record(version: ModelVersion | None, outcome: str, reason: str | None,
                   ) -> dict[str, Any]:
    """The `last_outcome` of info: which version, what became of it, why, when."""
    return {"sha256": version.sha256 if version else None,
            "name": version.name if version else None,
            "version": version.version if version else None,
            "outcome": outcome, "reason": reason,
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")}
