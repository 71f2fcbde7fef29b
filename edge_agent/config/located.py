"""Turn config problems into `FILE:LINE: key.path: problem (got X); allowed: Y` lines.

`edge_agent.config.loader` reads and validates the file; this module holds the wording a
technician reads: YAML syntax errors, pydantic errors mapped back to the YAML line of
the key to fix, close-match "did you mean" suggestions, and values shown without secrets.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from edge_agent.config.model import SLUG, AgentConfig
from edge_agent.config.rules import NotABoolean, Refused
from edge_agent.redact import MASK, redact, redact_url

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]

Problem = tuple[int, str]
"""(line, message): kept with the line so that all problems print in file order."""

SECRET_KEYS = frozenset({"password"})
URL_KEYS = frozenset({"url"})
"""Keys whose text is a URL, which may hold a password with or without its scheme."""

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
    "finite_number": "a finite number (not .inf or .nan)",
}
PATTERN_HINTS = {
    SLUG: (
        "is not a valid id",
        "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 "
        "characters (ids become part of MQTT topics: no spaces, '/', '+' or '#')",
    ),
    r"^rtsps?://": ("must start with rtsp:// or rtsps://", "rtsp://host:554/path"),
    r"^[^#+]+$": ("must not contain MQTT wildcards", "any text without '#' or '+'"),
}
TRUE_WORDS = frozenset({"yes", "true", "on", "y"})
"""YAML 1.1 words read as true; the others it reads as booleans are false."""
RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


# --- YAML syntax -------------------------------------------------------------------------


def syntax_problem(shown: str, text: str, error: yaml.MarkedYAMLError) -> str:
    """Name the line to fix and say in plain words what YAML rule it breaks."""
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
    # A value or a limit, not the syntax: `!!int x`, too deep, too many values.
    kind = "YAML error" if isinstance(error, ConstructorError | ComposerError) else (
        "YAML syntax error")
    return f"{shown}:{line + 1}:{column + 1}: {kind}: {_without_secret(explained, source)}"


SECRET_LINE = re.compile(r"\s*(?:-\s+)?[\"']?(?:" + "|".join(sorted(SECRET_KEYS)) + r")[\"']?\s*:")


def _without_secret(explained: str, source: str) -> str:
    """YAML's own message quotes the token it stumbled on (`found undefined alias
    'pw'`, `the tag !pw ...`): on a `password:` line that token is the password."""
    if not SECRET_LINE.match(source):
        return explained
    value = source.split(":", 1)[1].split("#", maxsplit=1)[0]
    forms = {form for token in value.split() for form in (token, token.lstrip("&*!"))}
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 3:  # a shorter one would mask ordinary words of the message
            explained = explained.replace(form, MASK)
    return explained


def _lacks_colon(text: str, line: int) -> bool:
    """Whether a line holds a bare word where a `key: value` pair belongs."""
    lines = text.splitlines()
    words = lines[line].split("#")[0].strip() if 0 <= line < len(lines) else ""
    return bool(words) and ":" not in words and not words.startswith(("-", "'", '"'))


# --- lines and key paths -----------------------------------------------------------------


def key_path(loc: Loc) -> str:
    """`cameras[0].url`: the path as the technician sees it in the file."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def locate(root: yaml.Node, loc: Loc) -> tuple[int, yaml.Node | None]:
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


def explain(error: ValidationError, root: yaml.Node, shown: str) -> list[Problem]:
    """One line per key to fix, at that key's line, however pydantic reported it."""
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
        line, node = locate(root, loc)
        text = _describe_group(details, node)
        problems.append((line, f"{shown}:{line}: {key_path(loc)}: {text}"))
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
    if "path" in ctx:  # a section-level rule about a key, or list item, inside it
        return (*loc, *ctx["path"])
    if "field" in ctx:  # a section-level rule about one of its keys
        return (*loc, ctx["field"])
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The suffix " (did you mean 'car'?)" for the closest of `choices`, or "" when none
    is close: how every error about a misspelt key or name offers the fix."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe_group(details: list[tuple[dict[str, Any], _Place]], node: yaml.Node | None) -> str:
    detail, place = details[0]
    nouns = [KIND_NOUNS[d["type"]] for d, p in details
             if p.union_branch and d["type"] in KIND_NOUNS]
    refused = detail["input"]
    if isinstance(refused, Refused) and not isinstance(refused, NotABoolean):
        return refused.problem
    if len(nouns) > 1:
        text = f"should be {' or '.join(dict.fromkeys(nouns))}"
        text += f" (got {_shown_value(detail['input'], node, place.loc)})"
    else:
        text = "; ".join(dict.fromkeys(_describe(d, p, node) for d, p in details))
    yaml_bool = isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool"
    if yaml_bool and (isinstance(refused, NotABoolean) or detail["type"] == "union_tag_invalid"):
        assert isinstance(node, yaml.ScalarNode)
        meaning = "true" if node.value.lower() in TRUE_WORDS else "false"
        word = "it" if _secret(place.loc) else node.value
        if _wants_number(detail, nouns):
            text += f"; YAML 1.1 reads {word} as {meaning}, not a number"
            allowed = _allowed_range(place)
            text += f"; allowed: {allowed}" if allowed else ""
        else:
            text += (f"; YAML 1.1 reads {word} as {meaning}: write "
                     f"{'it' if word == 'it' else repr(word)} in quotes if you mean the text")
    return text


def _wants_number(detail: dict[str, Any], nouns: list[str]) -> bool:
    """True where quoting the word cannot help: only numbers are allowed."""
    if "text" in nouns or "a file path" in nouns:
        return False
    if detail["type"] == "literal_error":
        return "'" not in str(detail.get("ctx", {}).get("expected", "'"))
    return str(detail["type"]).startswith(("int_", "float_"))


def _allowed_range(place: _Place) -> str | None:
    """`1 to 65535` from the field's ge/le (gt/lt) constraints, when it has them."""
    bounds: dict[str, Any] = {}
    for item in getattr(place.field_info, "metadata", ()) or ():
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is None and high is None:
        return None
    if high is None:
        return f"{'more than' if 'gt' in bounds else 'at least'} {low}"
    if low is None:
        return f"{'less than' if 'lt' in bounds else 'at most'} {high}"
    return f"{low} to {high}"


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
        as_bool = isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool"
        tag = node.value if as_bool else _shown_value(ctx.get("tag"), None, place.loc)
        text = f"unknown type (got {tag}); allowed: {', '.join(_type_tags(place.annotation))}"
    elif kind == "literal_error":
        literal = get_origin(place.annotation) is Literal
        allowed = [str(v) for v in get_args(place.annotation)] if literal else [ctx["expected"]]
        text = f"not an allowed value{got}; allowed: {', '.join(allowed)}"
    elif kind in KIND_NOUNS:
        text = f"should be {KIND_NOUNS[kind]}{got}"
        if kind == "string_type" and isinstance(node, yaml.ScalarNode) and node.style is None:
            text += ("; put it in quotes" if _secret(place.loc)
                     else f"; put it in quotes: '{node.value}'")
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
    text = "unknown key" + did_you_mean(key, place.owner.model_fields)
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


def _secret(loc: Loc) -> bool:
    """A key whose value is never shown, not even in a hint (`password`)."""
    return any(part in SECRET_KEYS for part in loc)


def _shown_value(value: Any, node: yaml.Node | None, loc: Loc) -> str:
    if _secret(loc):
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
        # A URL key's value is masked as a URL even without its scheme (admin:pw@host).
        value = redact(redact_url(value) if loc and loc[-1] in URL_KEYS else value)
        shown = repr(value if len(value) <= 60 else value[:57] + "...")
    else:
        shown = str(value)
    return shown
