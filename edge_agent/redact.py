"""One redaction function for every text that leaves the process: logs, files, MQTT.

Camera URLs carry passwords in three places: the userinfo (`rtsp://user:pass@host`),
the query (`?user=a&password=...`, common on some cameras) and path parameters
(`/stream;password=...`). FFmpeg, OpenCV and our own errors quote those URLs inside
longer texts. `redact` finds every URL in a text and masks all three; it also masks
`name=value` pairs whose name looks secret anywhere in the text, and any value the
config registered as a secret (the MQTT password), wherever it appears.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

SECRET_NAME = re.compile(
    r"pass|pwd|token|key|secret|auth|signature|sig\b|credential|session", re.IGNORECASE
)
"""A parameter whose name contains one of these is a secret: password, passwd, pwd,
pass, api_key, access_token, X-Amz-Signature, authorization, secret, ..."""

URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>`]+")
"""A URL inside a longer text; it ends at whitespace or a quote."""

HOST_AFTER_AT = re.compile(
    r"(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9_.-]*)(?::[0-9]*)?(?=$|[/?#;])"
)
"""What must follow the '@' that ends the userinfo: a host, an optional port, then the
path, query, parameters or the end."""

PARAMETER = re.compile(r"(?<![A-Za-z0-9_.\-])([A-Za-z0-9_.\-]+)(=)([^&;#\s\"'<>,]*)")
"""`name=value` in free text: the value ends at a comma, a quote or whitespace."""

URL_PARAMETER = re.compile(r"(?<![A-Za-z0-9_.\-])([A-Za-z0-9_.\-]+)(=)([^&;#\s\"'<>]*)")
"""`name=value` in a URL's query or path parameters (`;name=value`): it ends at & ; #."""

MIN_SECRET_LENGTH = 4
"""Registered secrets shorter than this are not replaced as text (too many false hits)."""

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """A value the config holds as a secret: it is masked wherever it later appears."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value)


def redact_url(url: str) -> str:
    """The URL with its userinfo and secret-named query and path parameters masked.

    The userinfo ends at the LAST '@' that a host follows, so a password holding '/',
    ':' or another '@' is masked whole; a URL whose shape is unclear loses more (its
    host) rather than less.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _mask_parameters(url, URL_PARAMETER)
    # Parameters first: an '@' inside a masked value must not pass for the userinfo's end.
    rest = _mask_parameters(rest, URL_PARAMETER)
    end = _userinfo_end(rest)
    if end >= 0:
        rest = f"{MASK}@" + rest[end + 1:]
    return scheme + separator + rest


def redact(text: str | None) -> str:
    """`text` with every URL, secret-named parameter and registered secret masked."""
    if not text:
        return text or ""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = URL.sub(lambda match: redact_url(match.group(0)), text)
    return _mask_parameters(text, PARAMETER)


def _userinfo_end(rest: str) -> int:
    """Index of the '@' that ends the userinfo in `rest` (after '://'), or -1."""
    position = rest.rfind("@")
    while position >= 0:
        if HOST_AFTER_AT.match(rest, position + 1):
            return position
        position = rest.rfind("@", 0, position)
    # An '@' but no host after any of them: mask up to the last one all the same.
    return rest.rfind("@")


def _mask_parameters(text: str, pattern: re.Pattern[str]) -> str:
    def mask(match: re.Match[str]) -> str:
        name, equals, value = match.groups()
        if value and value != MASK and SECRET_NAME.search(name):
            return f"{name}{equals}{MASK}"
        return match.group(0)

    return pattern.sub(mask, text)


class RedactFilter(logging.Filter):
    """Masks secrets in every record's final text, from any logger, before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
