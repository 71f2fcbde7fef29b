"""Bounded readers for the metadata a model carries: the Ultralytics `metadata.yaml`
sidecar and the Python-literal strings in ONNX metadata_props / IR rt_info.

A model folder is input like any other: a 352-byte alias chain ("billion laughs") in
`metadata.yaml` once took the agent to 24 GB. Each reader caps size and nesting, refuses
YAML anchors and aliases (Ultralytics never writes them), and turns every failure into a
ModelLoadError naming the file. engines/ cannot use edge_agent's config loader, so this
is its own small one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from engines.errors import ModelLoadError


def is_decimal(text: str) -> bool:
    """Whether `text` is a whole number int() reads: ASCII digits only, since
    str.isdigit() also takes '²' and '①', which int() refuses (a traceback, once)."""
    return text.isascii() and text.isdigit()


def _bad(where: str, cause: str) -> ModelLoadError:
    """Bad metadata is the model's fault: every backend refuses it alike."""
    return ModelLoadError(where, cause, any_backend=True)


MAX_SIDECAR_BYTES = 64 * 1024
MAX_LITERAL_CHARS = 64 * 1024
MAX_DEPTH = 8
"""Ultralytics metadata nests two deep (names: {0: person}); 8 leaves room."""


def read_sidecar(sidecar: Path) -> dict[str, str]:
    """A `metadata.yaml` as a flat dict of strings (structured values as Python literals)."""
    where = str(sidecar)
    try:
        with sidecar.open("rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise _bad(where, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise _bad(where, "is larger than 64 KiB; an Ultralytics metadata.yaml "
                             "is a few hundred bytes")
    try:
        text = raw.decode("utf-8-sig")
        _check_events(text, where)
        data = yaml.safe_load(text)
    except ModelLoadError:
        raise
    except UnicodeDecodeError as exc:
        raise _bad(where, f"not UTF-8 text (byte {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise _bad(where, f"{line}not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise _bad(where, f"not valid YAML: {type(exc).__name__}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(where, f"is a YAML {type(data).__name__}, expected a mapping "
                             "(names:, imgsz:, ...)")
    return {str(key): val if isinstance(val, str) else repr(val) for key, val in data.items()}


def _check_events(text: str, where: str) -> None:
    """Refuse anchors, aliases and deep nesting before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise _bad(where, f"line {line}: YAML anchors and aliases (&, *) are "
                                 "not allowed in model metadata")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise _bad(where, f"line {line}: nested more than {MAX_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def literal(text: str, where: str, key: str) -> object:
    """A metadata value written as a Python literal ("{0: 'person'}", "[640, 640]").

    Bounded in size and nesting before ast sees it (deep brackets exhaust its stack); a
    value that is not a literal is None: the caller decides whether that is an error.
    """
    if len(text) > MAX_LITERAL_CHARS:
        raise _bad(where, f"metadata {key!r} is {len(text)} characters; at most "
                             f"{MAX_LITERAL_CHARS} are read")
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise _bad(where, f"metadata {key!r} is nested more than {MAX_DEPTH} deep")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def class_names(parsed: object, where: str, key: str) -> tuple[str, ...] | None:
    """Validated class names from a parsed `names`/`labels` value; None if not a container.

    A map must have the integer keys 0..n-1 (class ids) and text values; a list must
    hold text. Anything else is a ModelLoadError naming the file and the key: sorting
    mixed keys used to crash the camera's thread with a bare TypeError.
    """
    if isinstance(parsed, dict):
        for name_key in parsed:
            if not isinstance(name_key, int) or isinstance(name_key, bool):
                raise _bad(where, f"metadata {key!r}: key {name_key!r} is not a "
                                     "class id (expected the integers 0..n-1)")
        ids = sorted(parsed)
        if ids != list(range(len(ids))):
            missing = sorted(set(range(max(ids, default=-1) + 1)) - set(ids))
            what = f"id {missing[0]} is missing" if missing else f"id {ids[0]} is negative"
            raise _bad(where, f"metadata {key!r}: class ids must be 0..n-1; {what}")
        names = [parsed[i] for i in ids]
    elif isinstance(parsed, list | tuple):
        names = list(parsed)
    else:
        return None
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise _bad(where, f"metadata {key!r}: class {index} is {name!r}, "
                                 "expected a name (text)")
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise _bad(where, f"metadata {key!r}: classes {seen[name]} and {index} "
                                 f"are both named {name!r}")
        seen[name] = index
    if not names:
        raise _bad(where, f"metadata {key!r} holds no class names")
    return tuple(names)
