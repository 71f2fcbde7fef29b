"""Load the agent's YAML file and explain every problem in words a technician can act on.

The shape of the config lives in `edge_agent.config.model`; this module reads the file,
expands `${VAR}` references, validates, resolves relative paths against the file's own
folder, and reports every problem as `FILE:LINE: key.path: problem (got X); allowed: Y`
(the wording and the YAML line mapping live in `edge_agent.config.located`).
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

from edge_agent.config.located import Loc, Problem, explain, key_path, locate, syntax_problem
from edge_agent.config.model import AgentConfig, FileCamera, GstreamerCamera, RtspCamera
from edge_agent.config.rules import printable
from edge_agent.config.yaml_loader import MAX_FILE_BYTES, StrictLoader, TooBigError, measure
from edge_agent.errors import ConfigError
from edge_agent.redact import pipeline_secrets, redact, register_secret, url_secrets
from engines.errors import EngineError
from engines.model_info import read_labels
from engines.regular_file import not_regular, open_regular

log = logging.getLogger(__name__)

ENV_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}` is replaced by the environment variable NAME; `$${NAME}` is a literal `${NAME}`."""
MAX_PROBLEMS = 50
MAX_LINE = 500


class CheckResult(NamedTuple):
    """What `edge-agent check-config` prints: ok is False when the file is unusable."""

    ok: bool
    text: str


def load_config(path: str | Path) -> AgentConfig:
    """Read, validate and resolve one config file; raise ConfigError listing every problem.

    The one loader behind `run`, `check-config` and SIGHUP reload: whatever the file
    holds, it returns a config or raises ConfigError with located one-line problems,
    within bounded time and memory (see edge_agent.config.yaml_loader).
    """
    shown = str(path)
    try:
        config, problems = _load(Path(path), shown)
    except ConfigError as error:
        raise _clean(error.problems, shown) from None
    except Exception as error:  # a loader failure nobody foresaw: still one line, exit 2
        log.debug("unexpected error loading %s", shown, exc_info=True)
        why = f"{type(error).__name__}: {error}"
        raise _clean([f"{shown}: cannot load the config: {why}"], shown) from None
    if problems:
        raise _clean([text for _, text in sorted(problems, key=lambda item: item[0])], shown)
    log.debug("loaded config %s", shown)
    assert config is not None
    return config


def _load(path: Path, shown: str) -> tuple[AgentConfig | None, list[Problem]]:
    root, data, problems = _read_yaml(path, shown)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as error:
        return None, problems + explain(error, root, shown)
    if problems:
        return None, problems
    config = _resolve_paths(config, path.absolute().parent)
    problems += check_files(config, root, shown)
    _register_secrets(config)
    return config, problems


def _clean(lines: list[str], shown: str) -> ConfigError:
    """One line per problem, printable, not too long, no secrets; at most MAX_PROBLEMS."""
    cleaned = []
    for raw in lines[:MAX_PROBLEMS]:
        line = printable(redact(raw))  # no raw control or bidi character reaches a terminal
        cleaned.append(line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "...")
    if len(lines) > MAX_PROBLEMS:
        cleaned.append(f"{shown}: ... and {len(lines) - MAX_PROBLEMS} more problems")
    return ConfigError("\n".join(cleaned), cleaned, count=len(lines))


def _register_secrets(config: AgentConfig) -> None:
    """Passwords the config holds are masked wherever they later appear in a log line."""
    register_secret(config.mqtt.password)
    for cam in config.cameras:
        if isinstance(cam, RtspCamera):
            secrets = url_secrets(cam.url)
        elif isinstance(cam, GstreamerCamera):
            secrets = pipeline_secrets(cam.pipeline)
        else:
            continue
        for secret in secrets:
            register_secret(secret)


def check_config(path: str | Path) -> CheckResult:
    """Validate without starting anything: the problems, or a short summary of what would run."""
    try:
        config = load_config(path)
    except ConfigError as error:
        count = error.count
        plural = "problem" if count == 1 else "problems"
        return CheckResult(False, f"{error}\n{path}: {count} {plural}")
    return CheckResult(True, describe(config, str(path)))


def describe(config: AgentConfig, shown: str) -> str:
    """A few lines saying what this config would run, plus warnings about missing files."""
    cameras = ", ".join(
        f"{cam.id}: {cam.type}{'' if cam.enabled else ' (disabled)'}" for cam in config.cameras
    )
    backend = config.backend.type
    device = getattr(config.backend, "device", None)  # not every backend has one
    if device:
        backend += f" on {device}"
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
              for what, where in files if where is not None and not _exists(where)]
    return "\n".join(lines)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG, EACCES on a parent: not usable either way
        return False


def check_files(config: AgentConfig, root: yaml.Node, shown: str) -> list[Problem]:
    """Files `run` would need at once: TLS files must exist; a labels file must read."""
    needed: list[tuple[Loc, Path | None, str]] = []
    if config.mqtt.tls is not None:
        tls = config.mqtt.tls
        needed += [
            (("mqtt", "tls", "ca_file"), tls.ca_file, "TLS CA file"),
            (("mqtt", "tls", "cert_file"), tls.cert_file, "TLS client certificate"),
            (("mqtt", "tls", "key_file"), tls.key_file, "TLS client key"),
        ]
    problems: list[Problem] = []
    for loc, file, what in needed:
        if file is not None and not _is_file(file):
            line = locate(root, loc)[0]
            kind = not_regular(file)
            why = f"is {kind}" if kind else "not found"
            problems.append((line, f"{shown}:{line}: {key_path(loc)}: {what} {file} {why}"))
    problems += _not_regular_files(config, root, shown)
    labels = config.model.labels
    if labels is not None and _is_file(labels):
        try:
            read_labels(labels)
        except EngineError as error:
            line = locate(root, ("model", "labels"))[0]
            problems.append((line, f"{shown}:{line}: model.labels: {error}"))
    return problems


def _not_regular_files(config: AgentConfig, root: yaml.Node, shown: str) -> list[Problem]:
    """Files read later (labels, video files, the model, the spool) that exist but are a FIFO, a
    device, a socket (or, but for a model folder, a directory): `run` would hang or fail."""
    found: list[tuple[Loc, Path, str]] = []
    if config.model.labels is not None:
        found.append((("model", "labels"), config.model.labels, "labels file"))
    if not _is_dir(config.model.path):
        found.append((("model", "path"), config.model.path, "model file"))
    calibration = getattr(config.backend, "int8_calibration_cache", None)
    if calibration is not None:
        found.append((("backend", "int8_calibration_cache"), calibration, "calibration cache"))
    if config.mqtt.spool.path is not None:
        found.append((("mqtt", "spool", "path"), config.mqtt.spool.path, "spool file"))
    found += [(("cameras", index, "path"), cam.path, "video file")
              for index, cam in enumerate(config.cameras) if isinstance(cam, FileCamera)]
    problems: list[Problem] = []
    for loc, file, what in found:
        kind = not_regular(file)
        if kind:
            line = locate(root, loc)[0]
            problems.append((line, f"{shown}:{line}: {key_path(loc)}: {what} {file} is {kind}"))
    return problems


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


# --- reading YAML -------------------------------------------------------------------------


def _read_yaml(path: Path, shown: str) -> tuple[yaml.Node, Any, list[Problem]]:
    try:
        with open_regular(path) as handle:  # never a FIFO, a device or more than the limit
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{shown}: cannot read the config file: {reason}") from error
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{shown}: the file is larger than {MAX_FILE_BYTES // 1024} KiB; "
                          "a config is a few KiB (is this the right file?)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        message = f"{shown}:{line}: the file is not UTF-8 text (byte {raw[error.start]:#04x})"
        raise ConfigError(message) from error

    try:
        loader = StrictLoader(text)
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
        measure(root)
        scan = _Scan(shown)
        scan.visit(root, ())
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        raise ConfigError(syntax_problem(shown, text, error)) from error
    except TooBigError as error:
        raise ConfigError(f"{shown}:{error.line}: {error.problem}") from error
    except yaml.YAMLError as error:  # unmarked: still name the file
        raise ConfigError(f"{shown}: YAML error: {error}") from error
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
