"""One redaction function for every text that leaves the process: logs, files, MQTT.

Camera URLs carry passwords in many places: the userinfo (`rtsp://user:pass@host`),
the query (`?user=a&password=...`), the fragment, path parameters (`/stream;password=...`)
and the XMeye/NVR path form (`/user=admin_password=..._channel=1_stream=0.sdp`).
FFmpeg, OpenCV and our own errors quote those URLs inside longer texts. `redact` finds
every URL in a text and masks every `name=value` pair whose name (percent-escapes
decoded) looks secret, wherever in the URL it sits and whichever of `_ & ; / # ?`
separates it; it also masks such pairs in free text, and any value the config
registered as a secret (the MQTT password), wherever it appears.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from urllib.parse import unquote

MASK = "***"

SECRET_NAME = re.compile(
    r"pass|pwd|token|key|secret|auth|signature|sig\b|credential|session", re.IGNORECASE
)
"""A parameter whose name contains one of these is a secret: password, passwd, pwd,
pass, api_key, access_token, X-Amz-Signature, authorization, secret, ..."""

SHORT_SECRET_NAMES = frozenset({
    "p", "pw", "pass", "pwd", "passwd", "password", "token", "key", "secret", "auth",
    "sig", "signature", "apikey", "api_key", "access_token", "credential", "credentials",
})
"""Conventional names too short to find as a part of a longer one (`?p=...`): a secret
when the whole name, or one of its `_`/`-`/`.` parts, is one of these. `u`, `user` and
`username` are not secrets and stay visible."""

NAME_PART = re.compile(r"[_.\-]")

URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>`]+")
"""A URL inside a longer text; it ends at whitespace or a quote."""

HOST_AFTER_AT = re.compile(
    r"(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9_.-]*)(?::[0-9]*)?(?=$|[/?#;])"
)
"""What must follow the '@' that ends the userinfo: a host, an optional port, then the
path, query, parameters or the end."""

WORD = re.compile(r"[^\s\"'<>,`]+")
"""A run of text holding a `name=value` pair: it ends at whitespace, a quote or a comma.
Its pairs are masked as a URL's are, so a URL quoted without its scheme
(`/user=admin_password=..._channel=1`) loses its secrets too."""

NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.%[]-"
)
"""What a parameter name before an '=' is made of (`auth[token]` included)."""

URL_VALUE_END = re.compile(r"[&;]|[_/](?=[A-Za-z0-9.%\-][A-Za-z0-9_.%\-]{0,63}=)")
"""Where a secret value inside a URL ends: at '&' or ';', or at a '_' or '/' that starts
the next `name=` (the XMeye form). A '#' does not end it: RTSP has no fragments, and a
'#' there is most often an unescaped part of the password; a URL whose shape is unclear
loses more, never less."""

SPACED_PAIR = re.compile(
    r"""(?<![^\s])([A-Za-z0-9_.%\[\]-]{1,64})(?:[ \t]++=[ \t]*+|=[ \t]++)"""
    r"""("[^"\n]{0,2000}"|'[^'\n]{0,2000}'|[^\s"']+)"""
)
"""`name = value`, spaces around '=' (GStreamer reads `user-pw = x` as `user-pw=x`)."""

MAX_QUOTED = 2000
"""Longest quoted value (`name="value"`, a GStreamer property) looked into."""

NOT_SECRETS = frozenset({"true", "false", "none", "null", "yes", "no", "on", "off"})
"""Values of a secret-named URL parameter that are flags, not secrets (`?auth=true`):
registered, every later `true` in a log line would be masked."""

MIN_SECRET_LENGTH = 4
"""Registered secrets shorter than this are not replaced as text (too many false hits)."""

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """A value the config holds as a secret: it is masked wherever it later appears, as
    written and percent-decoded (`p%40ss` is quoted as `p@ss` by tools that decode it)."""
    if not value:
        return
    with _secrets_lock:
        _secrets.update(form for form in {value, unquote(value)}
                        if len(form) >= MIN_SECRET_LENGTH)


def redact_url(url: str) -> str:
    """The URL with its userinfo and secret-named query and path parameters masked.

    The userinfo ends at the LAST '@' that a host follows, so a password holding '/',
    ':' or another '@' is masked whole; a URL whose shape is unclear loses more (its
    host) rather than less.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:  # written without its scheme: `admin:pass@10.0.0.5/stream` all the same
        rest = _mask_url_parameters(url)
        end = _userinfo_end(rest)
        return f"{MASK}@" + rest[end + 1:] if end >= 0 else rest
    # Parameters first: an '@' inside a masked value must not pass for the userinfo's end.
    rest = _mask_url_parameters(rest)
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
    text = SPACED_PAIR.sub(_mask_spaced_pair, _mask_quoted_pairs(text))
    text = URL.sub(lambda match: redact_url(match.group(0)), text)
    return WORD.sub(lambda match: _mask_url_parameters(match.group(0))
                    if "=" in match.group(0) else match.group(0), text)


def _quoted_pairs(text: str) -> Iterator[tuple[int, int, int, int]]:
    """(name start, name end, value start, value end) of each `name="value"`
    or `name='value'` (a GStreamer property: `user-pw="..."`, `location="rtsp://..."`),
    whose value may hold the spaces that end `WORD`. Linear: names are walked back from
    each '=' over text not walked yet, as in _secret_spans."""
    done = 0
    position = text.find("=")
    while position >= 0:
        quote = text[position + 1:position + 2]
        if quote in ('"', "'"):
            start = position
            while start > done and text[start - 1] in NAME_CHARS:
                start -= 1
            close = text.find(quote, position + 2, position + 3 + MAX_QUOTED)
            if start < position and close >= 0:
                yield start, position, position + 2, close
                done = close + 1
                position = text.find("=", done)
                continue
        position = text.find("=", position + 1)


def _mask_quoted_pairs(text: str) -> str:
    """A quoted secret-named value masked whole; a quoted URL masked as a URL (its
    password may hold a space, where an unquoted URL would end)."""
    out: list[str] = []
    done = 0
    for start, end, value_start, value_end in _quoted_pairs(text):
        value = text[value_start:value_end]
        if is_secret_name(text[start:end]) and value and not value.startswith(MASK):
            value = MASK
        elif "://" in value:
            value = redact_url(value)
        out.append(text[done:value_start] + value)
        done = value_end
    out.append(text[done:])
    return "".join(out)


def _mask_spaced_pair(match: re.Match[str]) -> str:
    """`user-pw = x` with its value masked when the name is a secret's."""
    name, value = match.groups()
    if not is_secret_name(name) or value.strip("\"'").startswith(MASK):
        return match.group(0)
    quote = value[0] if value[0] in "\"'" else ""
    return match.group(0)[: match.start(2) - match.start(0)] + f"{quote}{MASK}{quote}"


def _userinfo_end(rest: str) -> int:
    """Index of the '@' that ends the userinfo in `rest` (after '://'), or -1."""
    position = rest.rfind("@")
    while position >= 0:
        if HOST_AFTER_AT.match(rest, position + 1):
            return position
        position = rest.rfind("@", 0, position)
    # An '@' but no host after any of them: mask up to the last one all the same.
    return rest.rfind("@")


def is_secret_name(name: str) -> bool:
    """Whether a parameter called `name` (percent-escapes and all) holds a secret."""
    decoded = unquote(name).lower()
    if SECRET_NAME.search(decoded) or decoded in SHORT_SECRET_NAMES:
        return True
    return any(part in SHORT_SECRET_NAMES for part in NAME_PART.split(decoded))


def _secret_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every secret `name=value`'s value in a URL (after '://'), in order."""
    done = 0  # nothing before it is looked at again
    position = text.find("=")
    while position >= 0:
        start = position
        while start > done and text[start - 1] in NAME_CHARS:  # linear: no regex backtracking
            start -= 1
        if start < position and is_secret_name(text[start:position]):
            end_match = URL_VALUE_END.search(text, position + 1)
            end = end_match.start() if end_match else len(text)
            value = text[position + 1:end]
            if value and not value.startswith(MASK):
                yield position + 1, end
            # Past the value either way: one already masked (or empty) is not scanned again
            # for each '=' after it (that made 'pass=***' x 12,500 take 8 s).
            done = end
            position = text.find("=", max(end, position + 1))
            continue
        position = text.find("=", position + 1)


def _mask_url_parameters(text: str) -> str:
    """Every secret `name=value` in a URL (after '://') masked, wherever it sits."""
    out: list[str] = []
    done = 0  # text[:done] is already in `out`
    for start, end in _secret_spans(text):
        out.append(text[done:start] + MASK)
        done = end
    out.append(text[done:])
    return "".join(out)


def url_secrets(url: str) -> list[str]:
    """The secrets a camera URL holds: the userinfo's password and every secret-named
    parameter's value, as written. Registered, they are masked where a tool quotes them
    outside the URL (FFmpeg's and GStreamer's own messages)."""
    rest = url.partition("://")[2] or url
    found = [rest[start:end] for start, end in _secret_spans(rest)]
    end = _userinfo_end(rest)
    if end >= 0:
        found.append(rest[:end].partition(":")[2])
    return [value for value in found if unquote(value).lower() not in NOT_SECRETS]


def pipeline_secrets(pipeline: str) -> list[str]:
    """The secrets a GStreamer pipeline holds: secret-named properties' values (`user-pw=`,
    quoted or not) and those of every URL in it (`location=rtsp://user:pw@...`)."""
    found: list[str] = []
    # `user-pw = x` is `user-pw=x`; a match starts only where a run of blanks does (linear)
    pipeline = re.sub(r"(?<![ \t])[ \t]*+=[ \t]*+", "=", pipeline)
    unquoted, done = [], 0
    for start, end, value_start, value_end in _quoted_pairs(pipeline):
        value = pipeline[value_start:value_end]
        found += [value] if is_secret_name(pipeline[start:end]) else url_secrets(value) \
            if "://" in value else []
        unquoted.append(pipeline[done:start])
        done = value_end + 1
    unquoted.append(pipeline[done:])
    for word in WORD.findall(" ".join(unquoted)):
        name, equals, value = word.partition("=")
        if equals and is_secret_name(name) and value:
            found.append(value)
        elif "://" in word:
            found += url_secrets(word.partition("=")[2] if equals else word)
    return [value for value in found if value.lower() not in NOT_SECRETS]


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
