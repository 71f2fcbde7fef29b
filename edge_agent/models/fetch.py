"""Getting a model's bytes onto the box: a resumable HTTP(S) download or a copy of a file
already on the box, both with a size limit, both verified against the expected sha256.

Plain urllib (no new dependency, no cloud SDK). A download goes to a partial file that is
kept between attempts and restarts; the next attempt asks for the rest with an HTTP Range
header, and starts over when the server ignores it (200 instead of 206).
"""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engines.metadata import is_decimal
from engines.model_info import file_sha256

log = logging.getLogger(__name__)

CHUNK = 1 << 16
SHA256 = re.compile(r"^[0-9a-f]{64}$")
Progress = Callable[[int, int | None], None]
"""(bytes so far, total bytes or None when the server does not say)."""


class FetchError(ValueError):
    """The model's bytes could not be had or are not the ones asked for; says why."""


def check_url(url: str) -> str:
    """The URL if it is http(s) with a host and no login in it; else FetchError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"url must be http:// or https:// (got scheme {parts.scheme!r})")
    if not parts.hostname:
        raise FetchError("url has no host")
    if parts.username or parts.password:
        raise FetchError("url must not carry a user or password (they would be logged)")
    return url


def verify(path: Path, expected: str) -> None:
    """FetchError (and the file removed) when its sha256 is not `expected`."""
    actual = file_sha256(path)
    if actual != expected:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        raise FetchError(f"sha256 mismatch: expected {expected}, the {size}-byte file has "
                         f"{actual} (truncated, corrupted or not the model meant)")


def copy_file(source: Path, into: Path, max_bytes: int) -> None:
    """Copy a file already on the box into the store's partial file."""
    size = source.stat().st_size
    if size > max_bytes:
        raise FetchError(f"the file is {size} bytes, over models.max_download_mb "
                         f"({max_bytes} bytes)")
    shutil.copyfile(source, into)


def download(
    url: str, into: Path, *, max_bytes: int, timeout_s: float, retries: int,
    progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Download `url` into `into`, resuming what is already there.

    Each failed attempt (connection lost, timeout, 5xx, a body shorter than announced)
    keeps the bytes received and retries up to `retries` times with a growing pause.
    A 4xx other than 416, or a body over `max_bytes`, fails at once (FetchError): the
    partial file is removed when it is over the limit, kept otherwise.
    """
    check_url(url)
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
            log.info("model download: attempt %d of %d, resuming at byte %d (%s)",
                     attempt + 1, retries + 1, _size(into), last)
        try:
            if _attempt(url, into, max_bytes, timeout_s, progress):
                return
            last = "the body ended before its announced length"
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and _size(into):  # asked past the end: start over
                into.unlink()
                last = "HTTP 416 for the resumed range"
                continue
            if 400 <= exc.code < 500:
                raise FetchError(f"the server answered HTTP {exc.code} {exc.reason}") from exc
            last = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(exc).__name__}: {reason}"
    raise FetchError(f"download failed after {retries + 1} attempts: {last}")


MIN_BYTES_PER_S = 16 * 1024
"""An attempt slower than this on average, once `timeout_s` has passed, is cut (and
retried, resuming): a server that drips bytes must not hold a deploy, and so the rollback
it keeps busy, for hours. 16 KiB/s brings a 10 MB model in under 11 minutes."""


def _check_rate(received: int, elapsed_s: float, timeout_s: float) -> None:
    """Raise TimeoutError when the attempt is too slow to be worth waiting for."""
    if elapsed_s > timeout_s and received < MIN_BYTES_PER_S * elapsed_s:
        raise TimeoutError(f"too slow: {received} bytes in {elapsed_s:.0f} s (less than "
                           f"{MIN_BYTES_PER_S // 1024} KiB/s)")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _attempt(url: str, into: Path, max_bytes: int, timeout_s: float,
             progress: Progress | None) -> bool:
    """One request; True when the whole body is in `into`."""
    have = _size(into)
    headers = {"Range": f"bytes={have}-"} if have else {}
    # check_url let only http(s) through: no file:// or custom schemes reach urllib.
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        if have and response.status != 206:
            have = 0  # the server ignored the Range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and is_decimal(length) else None
        if total is not None and total > max_bytes:
            into.unlink(missing_ok=True)
            raise FetchError(f"the model is {total} bytes, over models.max_download_mb "
                             f"({max_bytes} bytes)")
        received = have
        started = time.monotonic()
        with into.open("ab" if have else "wb") as out:
            # read1: whatever one socket read brings (at most CHUNK), so a server that
            # drips bytes still lets progress, stopping and the rate check run.
            while chunk := response.read1(CHUNK):
                received += len(chunk)
                _check_rate(received - have, time.monotonic() - started, timeout_s)
                if received > max_bytes:
                    out.close()
                    into.unlink(missing_ok=True)
                    raise FetchError(f"the download passed models.max_download_mb "
                                     f"({max_bytes} bytes)")
                out.write(chunk)
                if progress is not None:
                    progress(received, total)
    return total is None or received >= total
