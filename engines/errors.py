"""Errors raised by engines: each says what failed and what to do about it."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error an inference backend raises."""


class BackendUnavailableError(EngineError):
    """The backend's runtime is not installed or not usable on this machine."""


class ModelLoadError(EngineError):
    """The model file is missing, truncated, or not something this backend can run."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot load model {path}: {cause}")
        self.path = path
        self.cause = cause
