"""Load the agent's YAML file and explain every problem in words a technician can act on.

The shape of the config lives in `edge_agent.config_model`; this module reads the file,
expands `${VAR}` references, validates, resolves relative paths against the file's own
folder, and turns each pydantic error into `FILE:LINE: key.path: problem (got X); allowed: Y`.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from edge_agent.config_model import SLUG, AgentConfig, FileCamera
from edge_agent.errors import ConfigError

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]

ENV_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}` is replaced by the environment variable NAME; `$${NAME}` is a literal `${NAME}`."""

SECRET_KEYS = frozenset({"password"})
URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")

# What a technician should read instead of pydantic's type names.
KIND_NOUNS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "path_type": "a file path",
    "list_type": "a list (lines starting with '- ')",
    "model_type": "a section of 'key: value' lines",
    "model_attributes_type": "a section of 'key: value' lines",
    "dict_type": "a section of 'key: value' lines",
}
PATTERN_HINTS = {
    SLUG: (
        "is not a valid id",
        "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 "
        "characters (ids become part of MQTT topics: no spaces, '/', '+' or '#')",
    ),
    r"^rtsps?://": ("must start with rtsp:// or rtsps://", "rtsp://user:pass@host:554/path"),
    r"^[^#+]+$": ("must not contain MQTT wildcards", "any text without '#' or '+'"),
}
RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


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
        problems += _explain(error, root, shown)
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

Problem = tuple[int, str]
"""(line, message): kept with the line so that all problems print in file order."""


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
        raise ConfigError(_syntax_problem(shown, text, error)) from error
    finally:
        loader.dispose()
    return root, data, scan.problems


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a section"
    return repr(node.value)


def _syntax_problem(shown: str, text: str, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line, mark.column) if mark else (0, 0)
    lines = text.splitlines()
    source = lines[line] if line < len(lines) else ""
    problem = error.problem or "invalid YAML"
    opened = f" on line {error.context_mark.line + 1}" if error.context_mark else ""
    if "'\\t'" in problem or "\t" in source[: len(source) - len(source.lstrip())]:
        explained = "tab character: YAML forbids tabs for indentation; indent with spaces"
    elif problem.startswith("mapping values are not allowed") and _lacks_colon(text, line - 1):
        line, column = line - 1, len(lines[line - 1]) - len(lines[line - 1].lstrip())
        explained = "a ':' is missing: every setting is written 'key: value'"
    elif problem.startswith("mapping values are not allowed"):
        explained = (
            "unexpected ':'; this line is indented more than the key above it, "
            "or a value containing ': ' needs quotes"
        )
    elif problem.startswith(("expected <block end>", "did not find expected", "expected '<doc")):
        explained = "indentation does not line up with the lines above" + (
            f" (the enclosing block starts{opened})" if opened else "")
    elif problem.startswith("could not find expected ':'") and error.context_mark:
        line, column = error.context_mark.line, error.context_mark.column
        explained = "a ':' is missing: every setting is written 'key: value'"
    elif "quoted" in (error.context or "") and error.context_mark:
        line, column = error.context_mark.line, error.context_mark.column
        explained = f"this quote is never closed ({problem})"
    elif error.context and "single document" in error.context:
        explained = "only one YAML document is allowed: remove the second '---'"
    else:
        explained = f"{problem}{f' ({error.context}{opened})' if error.context else ''}"
    return f"{shown}:{line + 1}:{column + 1}: YAML syntax error: {explained}"


def _lacks_colon(text: str, line: int) -> bool:
    """Whether a line holds a bare word where a `key: value` pair belongs."""
    lines = text.splitlines()
    words = lines[line].split("#")[0].strip() if 0 <= line < len(lines) else ""
    return bool(words) and ":" not in words and not words.startswith(("-", "'", '"'))


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
        self.problems.append((line, f"{self.shown}:{line}: {_key_path(path)}: {problem}"))


def _key_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _locate(root: yaml.Node, loc: Loc) -> tuple[int, yaml.Node | None]:
    """The line of the deepest node that exists on loc, and that node if all of loc exists."""
    node: yaml.Node = root
    line = root.start_mark.line
    for part in loc:
        found = None
        if isinstance(node, yaml.MappingNode):
            found = next((pair for pair in reversed(node.value)
                          if isinstance(pair[0], yaml.ScalarNode) and pair[0].value == str(part)),
                         None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(
            node.value
        ):
            found = (node.value[part], node.value[part])
        if found is None:
            return line + 1, None
        line, node = found[0].start_mark.line, found[1]
    return line + 1, node


# --- explaining validation errors -----------------------------------------------------------


@dataclass
class _Place:
    """Where a pydantic error points, in the file's terms rather than pydantic's."""

    loc: Loc
    owner: type[BaseModel] | None = None  # the section that holds the last key
    siblings: tuple[type[BaseModel], ...] = ()  # other `type:` variants of that section
    field_info: Any = None
    annotation: Any = None
    union_branch: bool = False  # one branch of an `int | str` style union


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    members = _union_members(annotation)
    if members is not None and len(members) == 1:  # Optional[X]: pydantic adds no loc part
        return members[0]
    return annotation


def _union_members(annotation: Any) -> list[Any] | None:
    if get_origin(annotation) not in (Union, UnionType):
        return None
    return [_unwrap(arg) for arg in get_args(annotation) if arg is not type(None)]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _tags_of(member: Any) -> list[str]:
    """The `type:` values that select this variant of a tagged union."""
    if not _is_model(member) or "type" not in member.model_fields:
        return []
    return [str(tag) for tag in get_args(member.model_fields["type"].annotation)]


def _type_tags(annotation: Any) -> list[str]:
    """The allowed `type:` values of a tagged union, in declaration order."""
    return [tag for member in _union_members(annotation) or [] for tag in _tags_of(member)]


def _place(loc: Loc) -> _Place:
    """Walk the model along pydantic's loc, dropping the parts that only name union branches."""
    place = _Place(loc=(), annotation=AgentConfig)
    clean: list[str | int] = []
    for part in loc:
        annotation = _unwrap(place.annotation)
        members = _union_members(annotation)
        if members:
            chosen = [m for m in members if str(part) in _tags_of(m)]
            if chosen:
                place.siblings = tuple(m for m in members if m is not chosen[0])
                place.annotation = chosen[0]
                continue
            place.union_branch = True
            place.annotation = next((m for m in members if getattr(m, "__name__", "") == part),
                                    annotation)
            continue
        clean.append(part)
        if _is_model(annotation) and isinstance(part, str):
            place.owner, place.field_info = annotation, annotation.model_fields.get(part)
            place.annotation = place.field_info.annotation if place.field_info else None
            if not place.field_info:
                break
        elif get_origin(annotation) is list and isinstance(part, int):
            place.annotation, place.siblings = get_args(annotation)[0], ()
        else:
            place.annotation = None
    place.loc = tuple(clean)
    place.annotation = _unwrap(place.annotation)
    return place


def _explain(error: ValidationError, root: yaml.Node, shown: str) -> list[Problem]:
    grouped: dict[Loc, list[tuple[dict[str, Any], _Place]]] = {}
    for detail in error.errors():
        if detail["type"] == "invalid_key":
            continue  # a key that is not text: already reported while reading the YAML
        place = _place(detail["loc"])
        place.loc = _adjust_loc(detail, place.loc)
        grouped.setdefault(place.loc, []).append((dict(detail), place))
    problems: list[Problem] = []
    suggested = _suggested_keys(grouped)
    for loc, details in grouped.items():
        if details[0][0]["type"] == "missing" and loc in suggested:
            continue  # a typo of this key is already reported with a "did you mean"
        line, node = _locate(root, loc)
        text = _describe_group(details, node)
        problems.append((line, f"{shown}:{line}: {_key_path(loc)}: {text}"))
    return problems


def _adjust_loc(detail: Any, loc: Loc) -> Loc:
    """Point errors that pydantic reports on a whole list or section at the key to fix."""
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "union_tag_invalid":
        return (*loc, "type")
    if kind == "duplicate_camera_id":
        return (*loc, ctx["index"], "id")
    if kind == "no_enabled_camera":
        return ("cameras",)
    return loc


def _suggested_keys(grouped: dict[Loc, list[tuple[dict[str, Any], _Place]]]) -> set[Loc]:
    """Missing keys that an unknown key nearby is a likely typo of."""
    missing = {loc for loc, details in grouped.items() if details[0][0]["type"] == "missing"}
    found = set()
    for loc, details in grouped.items():
        detail, place = details[0]
        if detail["type"] == "extra_forbidden" and place.owner is not None:
            for guess in _close_keys(str(loc[-1]), place.owner):
                if (*loc[:-1], guess) in missing:
                    found.add((*loc[:-1], guess))
    return found


def _close_keys(key: str, owner: type[BaseModel]) -> list[str]:
    return difflib.get_close_matches(key, list(owner.model_fields), n=1, cutoff=0.6)


def _describe_group(details: list[tuple[dict[str, Any], _Place]], node: yaml.Node | None) -> str:
    detail, place = details[0]
    nouns = [KIND_NOUNS[d["type"]] for d, p in details
             if p.union_branch and d["type"] in KIND_NOUNS]
    if len(nouns) > 1:
        text = f"should be {' or '.join(dict.fromkeys(nouns))}"
        return f"{text} (got {_shown_value(detail['input'], node, place.loc)})"
    texts = dict.fromkeys(_describe(d, p, node) for d, p in details)
    return "; ".join(texts)


def _describe(detail: dict[str, Any], place: _Place, node: yaml.Node | None) -> str:
    """One pydantic error as `problem (got X); allowed: Y`."""
    kind, ctx = detail["type"], detail.get("ctx") or {}
    got = f" (got {_shown_value(detail['input'], node, place.loc)})"
    if kind == "extra_forbidden":
        text = _unknown_key(place)
    elif kind == "missing":
        about = place.field_info.description if place.field_info else None
        text = "required key is missing" + (f" ({about.rstrip('.')})" if about else "")
    elif kind == "union_tag_not_found":
        text = f"missing 'type:' key; allowed: {', '.join(_type_tags(place.annotation))}"
    elif kind == "union_tag_invalid":
        tag = _shown_value(ctx.get("tag"), None, place.loc)
        text = f"unknown type (got {tag}); allowed: {', '.join(_type_tags(place.annotation))}"
    elif kind == "literal_error":
        literal = get_origin(place.annotation) is Literal
        allowed = [str(v) for v in get_args(place.annotation)] if literal else [ctx["expected"]]
        text = f"not an allowed value{got}; allowed: {', '.join(allowed)}"
    elif kind in KIND_NOUNS:
        text = f"should be {KIND_NOUNS[kind]}{got}"
        if kind == "string_type" and isinstance(node, yaml.ScalarNode) and node.style is None:
            text += f"; put it in quotes: '{node.value}'"
    elif kind in RANGE_ERRORS:
        text = f"out of range{got}; allowed: {_range(place, ctx)}"
    elif kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        problem, allowed = PATTERN_HINTS.get(pattern, ("has the wrong form", pattern))
        text = f"{problem}{got}; allowed: {allowed}"
    elif kind == "too_short":
        what = "camera" if place.loc == ("cameras",) else "item"
        text = f"needs at least {ctx.get('min_length', 1)} {what}{got}"
    else:  # our own validators' errors and anything new: pydantic's text reads well enough
        message = str(ctx["error"]) if kind == "value_error" else detail["msg"]
        text = message[:1].lower() + message[1:]
    return text


def _unknown_key(place: _Place) -> str:
    if place.owner is None:
        return "unknown key"
    key = str(place.loc[-1])
    guess = _close_keys(key, place.owner)
    text = "unknown key" + (f" (did you mean '{guess[0]}'?)" if guess else "")
    owners = [m for m in place.siblings if key in m.model_fields]
    if owners and "type" in place.owner.model_fields:
        types = ", ".join(tag for m in owners for tag in _tags_of(m))
        text += f" ('{key}' belongs to type: {types})"
    return f"{text}; allowed: {', '.join(place.owner.model_fields)}"


def _range(place: _Place, ctx: dict[str, Any]) -> str:
    bounds = dict(ctx)
    for rule in place.field_info.metadata if place.field_info else []:
        bounds.update({name: getattr(rule, name) for name in ("ge", "gt", "le", "lt")
                       if getattr(rule, name, None) is not None})
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']} to {bounds['le']}"
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[name]} {bounds[name]}" for name in words if name in bounds)


def _shown_value(value: Any, node: yaml.Node | None, loc: Loc) -> str:
    if any(part in SECRET_KEYS for part in loc):
        shown = "a hidden value"
    elif isinstance(node, yaml.ScalarNode) and node.style is None and not isinstance(value, str):
        shown = node.value or "nothing"  # as typed: 0042, yes, 1e3 (not 34, True, 1000.0)
    elif value is None or value in ([], {}):
        shown = "nothing"
    elif isinstance(value, dict):
        shown = "a section of 'key: value' lines"
    elif isinstance(value, list):
        shown = "a list"
    elif isinstance(value, str):
        value = URL_PASSWORD.sub(r"\1***@", value)
        shown = repr(value if len(value) <= 60 else value[:57] + "...")
    else:
        shown = str(value)
    return shown


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
