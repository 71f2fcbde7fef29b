"""Open a side file (config, labels, TLS file, model metadata) only if it is a regular file.

A FIFO blocks `open()` until a writer comes (forever, on a box), `/dev/zero` never ends,
a directory or a socket fails with a misleading error. Every file the agent reads by
name goes through `open_regular`, which refuses anything but a regular file with an
OSError whose text says what it is, and opens with O_NONBLOCK so that even a file
swapped for a FIFO between the check and the open cannot block.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["NotRegularFileError", "file_kind", "not_regular", "open_regular"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The path names something other than a regular file."""


def file_kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def not_regular(path: Path) -> str | None:
    """"not a regular file (a FIFO)" when `path` exists and is not a regular file, else
    None (a regular file, or nothing there: the caller says "not found" its own way)."""
    try:
        kind = file_kind(os.stat(path).st_mode)
    except OSError:
        return None
    return f"not a regular file ({kind})" if kind else None


def open_regular(path: Path | str) -> BinaryIO:
    """`path` opened for reading in binary mode; NotRegularFileError if it is not a
    regular file, FileNotFoundError and other OSErrors as `open` raises them."""
    kind = file_kind(os.stat(path).st_mode)
    if kind is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            kind = file_kind(os.fstat(fd).st_mode)  # swapped since the stat?
            if kind is None:
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", str(path))
