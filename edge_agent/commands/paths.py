"""Path arguments: a path from a request is used only inside `commands.allowed_paths`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edge_agent.commands.spec import Code, RejectedError

MAX_PATH_BYTES = 4095


def allowed_path(text: str, folders: Sequence[Path]) -> Path:
    """`text` as a real path (symlinks and `..` resolved) inside one of `folders`.

    Raises RejectedError(PATH_NOT_ALLOWED) for a relative path, a NUL or control character,
    an over-long path, or one that ends up outside every folder (also through a
    symlink); the file need not exist yet. An empty `folders` allows nothing.
    """
    if not text or len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise RejectedError("the path is empty or longer than 4095 bytes", Code.PATH_NOT_ALLOWED)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise RejectedError("the path holds a control character", Code.PATH_NOT_ALLOWED)
    if not os.path.isabs(text):
        raise RejectedError(f"the path {text!r} is relative; give an absolute path",
                       Code.PATH_NOT_ALLOWED)
    real = Path(os.path.realpath(text))
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real != root and real.is_relative_to(root):
            return real
    shown = ", ".join(str(folder) for folder in folders) or "none (commands.allowed_paths)"
    raise RejectedError(f"the path {text!r} is outside the allowed folders: {shown}",
                   Code.PATH_NOT_ALLOWED)
