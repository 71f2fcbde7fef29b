"""Rules every config value obeys, whatever field it is in, and the MQTT-specific ones.

A value can be well-typed and still unusable: YAML reads `no` as false and pydantic
would turn it into 0 or "/dev/video0"; a NUL in a topic, a 70,000-character prefix or a
`$` at its start breaks MQTT far from the file that caused it. These checks run at
validation, so `check-config` and `run` refuse the same files with a line each.
"""

from __future__ import annotations

import os
import re
import socket
import types
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics: no '/', '+', '#' or spaces."""

MAX_TEXT = 8192
"""Longest text value (characters); paths and MQTT strings have tighter limits below."""
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
"""Linux PATH_MAX and NAME_MAX: a longer path fails in stat() with ENAMETOOLONG."""
MAX_PREFIX_BYTES = 256
"""A topic is prefix/device/camera/kind: at most 256 + 1 + 64 + 1 + 64 + ~20 bytes, far
below MQTT's 65,535-byte limit, so every topic the agent builds stays valid."""
MAX_CLIENT_ID_BYTES = 256
MAX_HOST = 253
HOST = re.compile(r"^[A-Za-z0-9_.:%-]+$")
"""A DNS name, an IPv4 address or a bare IPv6 address (with an optional %zone)."""
OWN_LIMITS = frozenset({"topic_prefix", "client_id", "host"})
"""Fields whose validator states a tighter limit than MAX_TEXT in its own words."""
MULTILINE_FIELDS = frozenset({"pipeline"})
"""Fields where a newline or tab is ordinary text (a GStreamer pipeline over lines)."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_NOT_SPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})
"""Unicode controls (C1) and format characters (category Cf: bidi overrides and isolates
such as U+202E and U+2066..2069, zero-width U+200B..200D, U+FEFF inside text): invisible
or reordering in a terminal or the journal, so an id, topic or log line could read as
something it is not. Refused in every text field, as ASCII controls are."""


def describe_char(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`, named by its kind: never the raw character."""
    kind = "a control character" if unicodedata.category(char) == "Cc" else (
        "an invisible format character")
    name = unicodedata.name(char, "")
    return f"{kind} (U+{ord(char):04X}{' ' + name if name else ''})"


def first_invisible(text: str) -> int:
    """Index of the first non-ASCII control or format character in `text`, or -1."""
    if text.isascii():
        return -1
    return next((index for index, char in enumerate(text)
                 if ord(char) > 0x7f and unicodedata.category(char) in INVISIBLE_CATEGORIES), -1)


def printable(text: str) -> str:
    """`text` with every control and format character written as an escape (\\u202e)."""
    text = CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    if text.isascii():
        return text
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in INVISIBLE_CATEGORIES
                   else char for char in text)


def _error(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


def _accepts_bool(annotation: Any) -> bool:
    """Whether a field of this type means true/false (bool, Optional[bool], Literal[True])."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if annotation is bool or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_accepts_bool(arg) for arg in get_args(annotation))
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in get_args(annotation))
    return False


def _item_type(annotation: Any) -> Any:
    """The item type of a list field (through Optional), else None."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        lists = [arg for arg in get_args(annotation) if get_origin(arg) is list]
        annotation = lists[0] if lists else None
    if get_origin(annotation) is list:
        return get_args(annotation)[0]
    return None


def _mentions_path(annotation: Any) -> bool:
    return annotation is Path or any(_mentions_path(arg) for arg in get_args(annotation))


class Refused:
    """Stands in for a value no field may hold: true/false where text or a number is
    meant, or text with control characters, too long, or a path Linux cannot open.

    No field type accepts it, so pydantic reports every such field at once, at its
    own key path and line; `config_errors` then words the reason.
    """

    def __init__(self, value: object, problem: str = "") -> None:
        self.value = value
        self.problem = problem

    def __repr__(self) -> str:
        return str(self.value).lower() if isinstance(self.value, bool) else "refused text"


class NotABoolean(Refused):
    """YAML 1.1 read `no`, `off`, `y` ... as a boolean where the field is not one."""


def text_problem(value: str, field: str, *, is_path: bool = False) -> str | None:
    """What makes this text unusable: control characters, length, the kernel's limits."""
    allowed_space = field in MULTILINE_FIELDS
    bad = (CONTROL_NOT_SPACE if allowed_space else CONTROL).search(value)
    if bad:
        return (f"contains a control character ({bad.group()!r}) at position {bad.start() + 1}; "
                "only printable text is allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains {error.object[error.start]!r}, which is not a Unicode character"
    invisible = first_invisible(value)
    if invisible >= 0:
        return (f"contains {describe_char(value[invisible])} at position {invisible + 1}; "
                "only printable text is allowed")
    if len(value) > MAX_TEXT and field not in OWN_LIMITS:
        return f"is {len(value)} characters long; allowed: at most {MAX_TEXT}"
    if is_path:
        size = len(os.fsencode(value))
        longest = max((len(os.fsencode(part)) for part in value.split("/")), default=0)
        if size > MAX_PATH_BYTES or longest > MAX_NAME_BYTES:
            return (f"file path too long for Linux ({size} bytes, longest name {longest}); "
                    f"allowed: at most {MAX_PATH_BYTES} bytes and {MAX_NAME_BYTES} per name")
    return None


def _plain(value: Any, annotation: Any, field: str) -> Any:
    if isinstance(value, bool) and not _accepts_bool(annotation):
        return NotABoolean(value)
    if isinstance(value, str):
        problem = text_problem(value, field, is_path=_mentions_path(annotation))
        return Refused(value, problem) if problem else value
    item = _item_type(annotation)
    if item is not None and isinstance(value, list):
        return [_plain(element, item, field) for element in value]
    places = _tuple_types(annotation)
    if places and isinstance(value, list):  # [x, y] points: true is not a coordinate
        return [_plain(element, places[min(i, len(places) - 1)], field)
                for i, element in enumerate(value)]
    return value


def _tuple_types(annotation: Any) -> tuple[Any, ...]:
    """The place types of a tuple field (tuple[float, float], tuple[int, ...]), else ()."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is not tuple:
        return ()
    return tuple(arg for arg in get_args(annotation) if arg is not Ellipsis)


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored.

    Every field of every section also refuses true/false where it does not mean
    true/false, control characters, non-finite numbers and over-long text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        checked = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is not None:  # unknown keys are reported as such
                checked[name] = _plain(value, field.annotation, name)
        return checked


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


class TlsRules(Strict):
    """A client key needs its certificate (a certificate may hold its own key)."""

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> Any:
        if getattr(self, "key_file", None) is not None and getattr(self, "cert_file", None) is None:
            raise _error(
                "key_without_certificate",
                "key_file is set but cert_file is not; mutual TLS needs both (or only "
                "cert_file, when the certificate file holds the key too)",
                field="key_file",
            )
        return self


class MqttRules(Strict):
    """What the broker and paho accept: topic, client id, host and login rules."""

    @field_validator("topic_prefix", check_fields=False)
    @classmethod
    def _topic_prefix(cls, prefix: str) -> str:
        if prefix.startswith("$"):
            raise _error(
                "topic_reserved",
                "must not start with '$': brokers reserve $ topics ($SYS) and subscribers "
                "to '#' never see them (got '{prefix}')", prefix=prefix[:60],
            )
        if utf8_size(prefix) > MAX_PREFIX_BYTES:
            raise _error(
                "topic_too_long",
                "is {size} bytes long; allowed: at most {limit} bytes (every topic must stay "
                "under MQTT's 65,535-byte limit)",
                size=utf8_size(prefix), limit=MAX_PREFIX_BYTES,
            )
        return prefix

    @field_validator("client_id", check_fields=False)
    @classmethod
    def _client_id(cls, client_id: str | None) -> str | None:
        if client_id is not None and not 1 <= utf8_size(client_id) <= MAX_CLIENT_ID_BYTES:
            raise _error("client_id_length",
                         "must be 1 to {limit} bytes long (got {size})",
                         limit=MAX_CLIENT_ID_BYTES, size=utf8_size(client_id))
        if client_id is not None and any(char in client_id for char in "#+/"):
            raise _error("client_id_chars", "must not contain '/', '+' or '#' (got '{value}')",
                         value=client_id[:60])
        return client_id

    @field_validator("host", check_fields=False)
    @classmethod
    def _host(cls, host: str) -> str:
        if len(host) > MAX_HOST or not HOST.match(host):
            raise _error(
                "host_form",
                "is not a host name or address (got '{value}'); allowed: a name like "
                "broker.local, an IPv4 address or a bare IPv6 address, without spaces, "
                "'/', '@' or a port (the port goes in mqtt.port)", value=host[:60],
            )
        return host

    @model_validator(mode="after")
    def _login(self) -> Any:
        if getattr(self, "password", None) is not None and getattr(self, "username", None) is None:
            raise _error(
                "password_without_username",
                "password is set but username is not; set both, or neither for an "
                "anonymous login", field="password",
            )
        return self


def default_device_id(data: Any) -> Any:
    """The host name stands in for a missing device_id, if it can be part of a topic.

    A host name holding '/', '#', '+', spaces or more than 64 characters is refused,
    not rewritten: two boxes must never end up on one id by sanitising.
    """
    if not isinstance(data, dict) or "device_id" in data:
        return data
    hostname = socket.gethostname()
    if not re.match(SLUG, hostname):
        raise _error(
            "hostname_not_id",
            "is not set, and this machine's host name '{hostname}' cannot be used in MQTT "
            "topics; set device_id: (letters, digits, '_', '.' and '-', at most 64)",
            hostname=hostname[:80], field="device_id",
        )
    return {**data, "device_id": hostname}
