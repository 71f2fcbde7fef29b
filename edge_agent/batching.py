"""The agent's side of cross-camera batching: wrap the engine when the config asks.

The batching itself is engines/batching.py; this only reads `backend.batch` and keeps
the Selection (reason, fallbacks) as it was, with the reason saying batching is on.
"""

from __future__ import annotations

import dataclasses
import logging

from edge_agent.config.model import AgentConfig
from edge_agent.selection.loading import Selection
from engines.batching import BatchingEngine, BatchPolicy

log = logging.getLogger(__name__)


def with_batching(selection: Selection, config: AgentConfig) -> Selection:
    """The selection, its engine wrapped in a BatchingEngine when `backend.batch` is set
    (and the backend chosen is the one that setting belongs to); else unchanged.

    Raises EngineError when the model's batched outputs cannot be split per frame; the
    engine is closed first.
    """
    batch = getattr(config.backend, "batch", None)
    engine = selection.engine
    if batch is None or engine.backend != config.backend.type:
        return selection
    policy = BatchPolicy(batch.max_size, batch.max_wait_ms)
    try:
        batched = BatchingEngine(engine, policy)
    except Exception:
        engine.close()
        raise
    log.info("batching frames across cameras: up to %d per inference, %.1f ms wait at most",
             policy.max_size, policy.max_wait_ms)
    reason = f"{selection.reason}; batches of up to {policy.max_size}"
    return dataclasses.replace(selection, engine=batched, reason=reason)
