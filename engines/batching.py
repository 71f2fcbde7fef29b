"""Frames from several callers (cameras) joined into one batched inference.

`BatchingEngine` wraps an engine whose model takes a batch (a dynamic or reshaped batch
dimension) and looks like a batch-1 engine to its callers: `submit` one frame's tensor,
get a Future of that frame's outputs. A collector thread waits for the engine to have a
free request, then takes the oldest waiting frame and at most `max_wait_ms` more for up to
`max_size - 1` others, stacks them, runs them as one request and splits the outputs.

Frames leave in the order they came (one FIFO), so each caller's order is kept, and a
frame waits at most `max_wait_ms` for a batch to fill (`BatchStats.fill_wait_ms` records
it); time waiting for a busy engine is not batch-filling and is not bounded here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from engines.base import Engine, InferResult, settle
from engines.errors import EngineError

log = logging.getLogger(__name__)

SPLIT_TOLERANCE = 1e-3
"""Largest difference (relative to the output's range) between a frame's outputs run
alone and run in a batch for the split to count as right."""


@dataclass(frozen=True)
class BatchPolicy:
    """`max_size` frames at most per inference; a frame waits `max_wait_ms` at most for
    others to join it."""

    max_size: int = 4
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_wait_ms < 0:
            raise ValueError(f"batch max_size must be >= 1 and max_wait_ms >= 0, not {self}")


class BatchStats:
    """What the collector did: batches, frames, sizes and the longest batch-fill wait."""

    def __init__(self) -> None:
        self.batches = 0
        self.frames = 0
        self.max_fill_wait_ms = 0.0
        self.last_fill_wait_ms = 0.0
        self.sizes: dict[int, int] = {}

    def add(self, size: int, fill_wait_ms: float) -> None:
        self.batches += 1
        self.frames += size
        self.sizes[size] = self.sizes.get(size, 0) + 1
        self.max_fill_wait_ms = max(self.max_fill_wait_ms, fill_wait_ms)
        self.last_fill_wait_ms = fill_wait_ms

    @property
    def mean_size(self) -> float:
        return self.frames / self.batches if self.batches else 0.0


Splitter = Callable[[np.ndarray, int], list[np.ndarray]]
"""(one output array of a batch of n, n) -> n arrays shaped like a batch-1 output."""


def split_leading(output: np.ndarray, count: int) -> list[np.ndarray]:
    """A (n, ...) output: one (1, ...) slice per frame."""
    return [output[i:i + 1] for i in range(count)]


def choose_splitters(
    single: Sequence[np.ndarray], batched: Sequence[np.ndarray], count: int
) -> list[Splitter]:
    """How to cut each batched output back into per-frame outputs, from their shapes.

    `single` are the outputs of one frame, `batched` of `count` frames. Raises
    EngineError when an output fits neither way (the model cannot be batched).
    """
    if len(single) != len(batched):
        raise EngineError(f"a batch of {count} gives {len(batched)} outputs, one frame "
                          f"{len(single)}")
    splitters: list[Splitter] = []
    for one, many in zip(single, batched, strict=True):
        one_shape, many_shape = tuple(np.shape(one)), tuple(np.shape(many))
        if many_shape == (count * one_shape[0], *one_shape[1:]) and one_shape[0] == 1:
            splitters.append(split_leading)
        else:
            raise EngineError(f"cannot split a batched output {list(many_shape)} into "
                              f"{count} outputs of {list(one_shape)}")
    return splitters


@dataclass
class _Waiting:
    tensor: np.ndarray
    future: Future[InferResult]
    queued_at: float


class BatchingEngine(Engine):
    """An engine seen frame by frame whose requests run frames of several callers at once.

    `inner` must accept tensors of 1..policy.max_size frames stacked on axis 0 (see the
    backend's batch setting); `close` closes it too unless `owns_inner` is False. The
    constructor checks on two random frames that a batched
    run, split, equals the frames run alone, and raises EngineError when it does not.
    """

    def __init__(self, inner: Engine, policy: BatchPolicy, *, owns_inner: bool = True) -> None:
        self.inner = inner
        self.owns_inner = owns_inner
        self.policy = policy
        self.backend, self.device = inner.backend, inner.device
        self.input, self.info = inner.input, inner.info
        self.stats = BatchStats()
        self._splitters = self._check_split()
        self._slots = threading.Semaphore(max(1, inner.parallelism))
        self._queue: queue.Queue[_Waiting | None] = queue.Queue(
            maxsize=max(1, inner.parallelism) * policy.max_size * 2)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._collect, name="batch-collector",
                                        daemon=True)
        self._thread.start()

    def _check_split(self) -> list[Splitter]:
        """Run two different frames alone and as a batch of 2; the split must agree."""
        rng = np.random.default_rng(7)
        low, high = (0, 255) if self.input.dtype == "uint8" else (0.0, 1.0 / self.input.scale)
        frames = [rng.uniform(low, high, self.input.shape).astype(self.input.dtype)
                  for _ in range(2)]
        alone = [self.inner.infer(frame).outputs for frame in frames]
        together = self.inner.infer(np.concatenate(frames)).outputs
        splitters = choose_splitters(alone[0], together, 2)
        for index, (split, out) in enumerate(zip(splitters, together, strict=True)):
            for frame, part in enumerate(split(np.asarray(out), 2)):
                expected = np.asarray(alone[frame][index])
                scale = max(float(np.ptp(expected)), 1e-6)
                if float(np.max(np.abs(part - expected))) > SPLIT_TOLERANCE * scale:
                    raise EngineError(f"output {index} of a batch differs from the frame run "
                                      "alone: the model mixes frames of a batch")
        return splitters

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        """Queue one frame's (1, ...) tensor; blocks while the queue is full."""
        future: Future[InferResult] = Future()
        with self._lock:  # so no frame can queue behind close()'s end marker
            if self._closed:
                raise EngineError("engine is closed")
            self._queue.put(_Waiting(tensor, future, time.monotonic()))
        return future

    @property
    def parallelism(self) -> int:
        return max(1, self.inner.parallelism) * self.policy.max_size

    def _collect(self) -> None:
        """The collector thread: one batch per free engine request, in arrival order."""
        ending = False
        while not ending:
            self._slots.acquire()
            first = self._queue.get()
            if first is None:
                return
            ready_at = time.monotonic()
            deadline = ready_at + self.policy.max_wait_ms / 1000
            batch = [first]
            while len(batch) < self.policy.max_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:  # closing: run what came before the end marker, then stop
                    ending = True
                    break
                batch.append(item)
            fill_wait_ms = (time.monotonic() - ready_at) * 1000
            batch = [item for item in batch if not item.future.cancelled()]
            if not batch:
                self._slots.release()
                continue
            self.stats.add(len(batch), fill_wait_ms)
            self._run(batch)

    def _run(self, batch: list[_Waiting]) -> None:
        try:
            future = self.inner.submit(np.concatenate([item.tensor for item in batch]))
        except Exception as exc:  # every frame of the batch hears of it
            self._slots.release()
            for item in batch:
                settle(item.future, error=exc)
            return
        future.add_done_callback(lambda done: self._split(done, batch))

    def _split(self, done: Future[InferResult], batch: list[_Waiting]) -> None:
        self._slots.release()
        try:
            raw = done.result()
            parts = [split(np.asarray(out), len(batch))
                     for split, out in zip(self._splitters, raw.outputs, strict=True)]
        except Exception as exc:
            for item in batch:
                settle(item.future, error=exc)
            return
        for index, item in enumerate(batch):
            settle(item.future, InferResult([part[index] for part in parts], raw.latency_ms))

    def close(self) -> None:
        """Frames already queued are run; then the inner engine closes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(30)
        if self.owns_inner:
            self.inner.close()
