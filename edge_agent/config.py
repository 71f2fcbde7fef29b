"""Load the agent's YAML file and explain every problem in words a technician can act on.

The shape of the config lives in `edge_agent.config_model`; this module reads the file,
expands `${VAR}` references, validates, resolves relative paths against the file's own
folder, and reports every problem as `FILE:LINE: key.path: problem (got X); allowed: Y`
(the wording and the YAML line mapping live in `edge_agent.config_errors`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError

from edge_agent.config_errors import Loc, Problem, explain, key_path, syntax_problem
from edge_agent.config_model import AgentConfig, FileCamera
from edge_agent.errors import ConfigError

log = logging.getLogger(__name__)

ENV_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}` is replaced by the environment variable NAME; `$${NAME}` is a literal `${NAME}`."""


class CheckResult(NamedTuple):
    """What `edge-agent check-config` prints: ok is False when the file is unusable."""

    ok: bool
    text: str


def load_config(path: str | Path) -> AgentConfig:
    """Read, validate and resolve one config file; raise ConfigError listing every problem."""
    shown = str(path)
    root, data, problems = _read_yaml(Path(path), shown)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as error:
        problems += explain(error, root, shown)
    if problems:
        lines = [text for _, text in sorted(problems, key=lambda item: item[0])]
        raise ConfigError("\n".join(lines), lines)
    log.debug("loaded config %s", shown)
    return _resolve_paths(config, Path(path).absolute().parent)


def check_config(path: str | Path) -> CheckResult:
    """Validate without starting anything: the problems, or a short summary of what would run."""
    try:
        config = load_config(path)
    except ConfigError as error:
        count = len(error.problems)
        plural = "problem" if count == 1 else "problems"
        return CheckResult(False, f"{error}\n{path}: {count} {plural}")
    return CheckResult(True, describe(config, str(path)))


def describe(config: AgentConfig, shown: str) -> str:
    """A few lines saying what this config would run, plus warnings about missing files."""
    cameras = ", ".join(
        f"{cam.id}: {cam.type}{'' if cam.enabled else ' (disabled)'}" for cam in config.cameras
    )
    backend = config.backend.type
    if config.backend.device:
        backend += f" on {config.backend.device}"
    lines = [
        f"{shown}: OK",
        f"  device:  {config.device_id}",
        f"  model:   {config.model.path} (family {config.model.family})",
        f"  backend: {backend}",
        f"  mqtt:    {config.mqtt.host}:{config.mqtt.port}, prefix {config.mqtt.topic_prefix}",
        f"  cameras: {len(config.cameras)} ({cameras})",
    ]
    files = [("model file", config.model.path), ("labels file", config.model.labels)]
    files += [(f"camera {cam.id}'s video file", cam.path) for cam in config.cameras
              if isinstance(cam, FileCamera)]
    lines += [f"  warning: {what} {where} does not exist (yet)"
              for what, where in files if where is not None and not where.exists()]
    return "\n".join(lines)


# --- reading YAML -------------------------------------------------------------------------


def _read_yaml(path: Path, shown: str) -> tuple[yaml.Node, Any, list[Problem]]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{shown}: cannot read the config file: {reason}") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        message = f"{shown}:{line}: the file is not UTF-8 text (byte {raw[error.start]:#04x})"
        raise ConfigError(message) from error

    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:  # a control character anywhere in the file
        line = text.count("\n", 0, error.position) + 1
        message = f"{shown}:{line}: the file contains a control character ({error.character:#04x})"
        raise ConfigError(message) from error
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(
                f"{shown}:1: the file is empty (or only comments); it needs at least the "
                "model: and cameras: sections (see configs/agent.yaml)"
            )
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(
                f"{shown}:{root.start_mark.line + 1}: the top level must be 'key: value' lines "
                f"such as model: and cameras: (got {_node_kind(root)})"
            )
        scan = _Scan(shown)
        scan.visit(root, ())
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        raise ConfigError(syntax_problem(shown, text, error)) from error
    finally:
        loader.dispose()
    return root, data, scan.problems


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a section"
    return repr(node.value)


@dataclass
class _Scan:
    """One pass over the node tree: duplicate keys and `${VAR}` expansion, with lines."""

    shown: str
    problems: list[Problem] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def visit(self, node: yaml.Node, path: Loc) -> None:
        if id(node) in self.seen:  # an alias: already expanded once
            return
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if key.tag != "tag:yaml.org,2002:str":
                    got = key.value or "nothing"
                    self._add(line, (*path, key.value), f"a key must be text (got {got})")
                elif key.value in first_line:
                    self._add(line, (*path, key.value), "duplicate key; it is already set on line "
                              f"{first_line[key.value]} (YAML would silently keep only the last)")
                else:
                    first_line[key.value] = line
                self.visit(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.visit(item, (*path, index))
        elif node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
            node.value = ENV_REFERENCE.sub(lambda match: self._env(match, node, path), node.value)

    def _env(self, match: re.Match[str], node: yaml.Node, path: Loc) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        value = os.environ.get(name)
        if value is None:
            self._add(node.start_mark.line + 1, path,
                      f"environment variable {name} is not set (got '${{{name}}}')")
            return match.group(0)
        return value

    def _add(self, line: int, path: Loc, problem: str) -> None:
        self.problems.append((line, f"{self.shown}:{line}: {key_path(path)}: {problem}"))


# --- paths ---------------------------------------------------------------------------------


def _resolve_paths(config: AgentConfig, base: Path) -> AgentConfig:
    """Relative paths are relative to the config file's folder, never to the working dir."""

    def resolve(path: Path | None) -> Path | None:
        if path is None or path.is_absolute():
            return path
        return Path(os.path.normpath(base / path))

    def paths(section: BaseModel, *names: str) -> Any:
        return section.model_copy(update={name: resolve(getattr(section, name)) for name in names})

    cameras = [paths(cam, "path") if isinstance(cam, FileCamera) else cam for cam in config.cameras]
    backend = config.backend
    for name in ("cache_dir", "int8_calibration_cache"):
        if getattr(backend, name, None) is not None:
            backend = paths(backend, name)
    mqtt = config.mqtt
    if mqtt.tls is not None:
        mqtt = mqtt.model_copy(update={"tls": paths(mqtt.tls, "ca_file", "cert_file", "key_file")})
    if mqtt.spool.path is not None:
        mqtt = mqtt.model_copy(update={"spool": paths(mqtt.spool, "path")})
    return config.model_copy(update={
        "state_dir": resolve(config.state_dir),
        "model": paths(config.model, "path", "labels"),
        "cameras": cameras,
        "backend": backend,
        "mqtt": mqtt,
    })
