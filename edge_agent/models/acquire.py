"""A deploy's first steps: the model's bytes fetched (or copied), verified and installed
in the store, reported step by step. Raises FetchError, StoreError or OSError."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config.models_store import ModelsConfig
from edge_agent.models.fetch import FetchError, copy_file, download, verify
from edge_agent.models.store import ModelStore

Step = Callable[..., None]
"""step(name, **fields): report one step (published as a command progress message)."""
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class DeployRequest:
    sha256: str
    url: str | None = None
    path: Path | None = None
    """Already checked against commands.allowed_paths by the caller."""
    name: str | None = None
    version: str | None = None
    labels: tuple[str, ...] | None = None
    """Class names in class-id order; default: the config's model.labels."""


def acquire(store: ModelStore, request: DeployRequest, suffix: str, settings: ModelsConfig,
            *, step: Step, stopping: threading.Event) -> str:
    """Put the model in `<store>/<sha256>/` unless it is there; its file name there.

    A download resumes a partial file left by an earlier attempt or a power cut; a file
    whose hash is wrong is removed; `stopping` ends a download (the partial file stays).
    """
    sha256 = request.sha256
    if sha256 in store.present():
        step("fetched", already_on_the_box=True)
    else:
        partial = store.partial_file(sha256)
        max_bytes = int(settings.max_download_mb * 1024 * 1024)
        last = [0.0]

        def report(received: int, total: int | None) -> None:
            if stopping.is_set():
                raise FetchError("the agent is stopping; the partial file is kept")
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                step("downloading", received=received, total=total)

        step("fetching", source=request.url or str(request.path))
        if request.url is not None:
            download(request.url, partial, max_bytes=max_bytes,
                     timeout_s=settings.download_timeout_s, retries=settings.download_retries,
                     progress=report)
        else:
            assert request.path is not None
            copy_file(request.path, partial, max_bytes)
        step("verifying", bytes=partial.stat().st_size)
        verify(partial, sha256)
        store.install(sha256, partial, suffix)
        step("fetched", already_on_the_box=False)
    if request.labels:
        labels = store.folder(sha256) / "labels.txt"
        labels.write_text("\n".join(request.labels) + "\n")
    return store.model_file(sha256)
