"""Errors raised by engines: each says what failed and what to do about it."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error an inference backend raises."""


class BackendUnavailableError(EngineError):
    """The backend's runtime is not installed or not usable on this machine."""


class PostprocessError(EngineError):
    """A model's outputs for one frame could not be turned into boxes (the cause is chained)."""


class ModelLoadError(EngineError):
    """The model file is missing, truncated, or not something this backend can run."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot load model {path}: {cause}")
        self.path = path
        self.cause = cause


class LabelsFileError(EngineError):
    """The labels file is missing, unreadable, not UTF-8 text, or does not fit the model.

    Not a ModelLoadError: the model itself is fine, and the message names the labels file.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"labels file {path} {problem}")
        self.path = path
        self.problem = problem
