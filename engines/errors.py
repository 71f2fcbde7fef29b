"""Errors raised by engines: each says what failed and what to do about it."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error an inference backend raises."""


class BackendUnavailableError(EngineError):
    """The backend's runtime is not installed or not usable on this machine."""


class PostprocessError(EngineError):
    """A model's outputs for one frame could not be turned into boxes (the cause is chained)."""


class ModelLoadError(EngineError):
    """The model file is missing, truncated, or not something this backend can run.

    `any_backend` marks faults of the model itself (its metadata, its output shapes):
    another backend would refuse it the same way, so nothing falls back and no message
    suggests a different backend.
    """

    def __init__(self, path: str, cause: str, *, any_backend: bool = False) -> None:
        super().__init__(f"cannot load model {path}: {cause}")
        self.path = path
        self.cause = cause
        self.any_backend = any_backend


class ModelFileError(ModelLoadError):
    """The model file (or a file it needs beside it) is missing or cannot be read."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(path, cause, any_backend=True)


class LabelsFileError(EngineError):
    """The labels file is missing, unreadable, not UTF-8 text, or does not fit the model.

    Not a ModelLoadError: the model itself is fine, and the message names the labels file.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"labels file {path} {problem}")
        self.path = path
        self.problem = problem
