"""Rectangular input: one compiled model per camera aspect, so a 16:9 camera is not fed
a square input that is 40 % padding.

A model whose input height and width may change (dynamic in the ONNX or IR file, or a
fully convolutional graph such as YOLOX that OpenVINO reshapes) is compiled once more
for each distinct input shape the cameras need, from the first frame of that shape (on
a thread of its own; frames run at the model's own size until it is ready), and
the compiled model is kept for every later frame and camera of that shape. The shape is
the camera's aspect at the model's stride: the long side stays the model's own, the
short side is rounded up to a multiple of the stride (1280x720 on a 640 model: 384x640).

`input_size` (config `model.input_size`): "auto" (rectangular where the model allows it,
else square, with a notice saying how to export a dynamic model), "square" (always the
model's own size) or (height, width) (every camera letterboxed into that one shape).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engines.detector import check_model
from engines.input_size import (
    InputSize,
    check_input_size,
    model_stride,
    rect_input_size,
)
from engines.postprocess import anchor_count

if TYPE_CHECKING:
    from engines.base import Engine

log = logging.getLogger(__name__)

GRID_FAMILIES = ("yolox", "yolov5", "ultralytics")
"""Families whose output has one row per grid cell: the row count must fit the shape."""


def check_rows(family: str, output_shapes: Sequence[Sequence[int]], height: int,
               width: int) -> str | None:
    """Why a reshaped model's outputs do not fit its new input (None when they do).

    A static graph with grid-sized constants inside may reshape without an error and
    still output the old grid's rows; its boxes would be garbage, so it is refused.
    """
    if family not in GRID_FAMILIES or not output_shapes or len(output_shapes[0]) != 3:
        return None
    expected = anchor_count(height, width)
    shape = list(output_shapes[0])
    rows = shape[2] if family == "ultralytics" else shape[1]
    if rows != expected:
        return (f"reshaped to {width}x{height} it outputs {shape}, not the {expected} grid "
                "cells of that shape (sizes fixed inside the graph)")
    return None


class ShapedEngines:
    """The engines of one model, one per input shape, made on first use and kept.

    Thread-safe: every camera's pipeline asks from its own thread; a shape is compiled
    once, on a thread of its own, and shared. A shape that fails to compile is logged
    once and served by the model's own size.
    """

    def __init__(self, engine: Engine, input_size: InputSize = "auto") -> None:
        self.base = engine
        self.input_size = check_input_size(input_size)
        self.stride = model_stride(engine.info.metadata)
        self._engines: dict[tuple[int, int], Engine] = {
            (engine.input.height, engine.input.width): engine}
        self._by_frame: dict[tuple[int, int], Engine] = {}
        self._jobs: dict[tuple[int, int], threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.notice: str | None = None
        """Why the input stays square (static model, backend), for the log and `info`."""
        if self.input_size != "square":
            why = engine.input_flexibility()
            if why is not None:
                self.notice = why
                level = logging.INFO if self.input_size == "auto" else logging.WARNING
                log.log(level, "rectangular input is off, every camera gets %dx%d: %s",
                        engine.input.width, engine.input.height, self.notice)
            elif self.input_size == "auto":
                log.info("rectangular input: %s compiled per camera aspect at stride %d",
                         engine.info.name, self.stride)

    @property
    def mode(self) -> str:
        """'auto', 'square' or 'fixed' (one configured shape)."""
        return self.input_size if isinstance(self.input_size, str) else "fixed"

    def wanted(self, frame_width: int, frame_height: int) -> tuple[int, int]:
        """The input (height, width) a frame of this size should get."""
        own = (self.base.input.height, self.base.input.width)
        if self.input_size == "square" or self.notice is not None:
            return own
        if isinstance(self.input_size, tuple):
            return self.input_size
        return rect_input_size(frame_width, frame_height, *own, self.stride)

    def engine_for(self, frame_width: int, frame_height: int, *, wait: bool = False) -> Engine:
        """The engine for frames of this size (the hot path: a dict lookup once made).

        A new shape compiles on a thread of its own; until it is ready (about a second
        on a small CPU, less from the cache) its frames run at the model's own size, so
        the first detection never waits for it. `wait=True` waits (tools, tests).
        """
        key = (frame_width, frame_height)
        found = self._by_frame.get(key)
        if found is not None:
            return found
        shape = self.wanted(frame_width, frame_height)
        with self._lock:
            engine = self._engines.get(shape)
            if engine is not None:
                self._by_frame[key] = engine
                return engine
            job = self._jobs.get(shape)
            if job is None:
                if self._closed:
                    return self.base
                job = threading.Thread(target=self._compile, args=(shape,), daemon=True,
                                       name=f"compile-{shape[1]}x{shape[0]}")
                self._jobs[shape] = job
                job.start()
        if not wait:
            return self.base
        job.join()
        return self.engine_for(frame_width, frame_height)

    def _compile(self, shape: tuple[int, int]) -> None:
        """Thread body: compile and check one shape; any failure leaves that shape square."""
        height, width = shape
        engine = self.base
        try:
            engine = self.base.reshaped(height, width)
            try:
                check_model(engine)  # one blank frame: outputs fit the new grid
            except Exception:
                engine.close()
                raise
        except Exception as exc:  # one bad shape must not stop the camera: square it is
            engine = self.base
            log.warning("cannot run %s at %dx%d (%s); frames of that shape use %dx%d",
                        self.base.info.name, width, height, exc, self.base.input.width,
                        self.base.input.height)
        with self._lock:
            self._jobs.pop(shape, None)
            late = self._closed and engine is not self.base
            if not late:
                self._engines[shape] = engine
        if late:
            engine.close()

    def shapes(self) -> list[tuple[int, int]]:
        """(height, width) of every compiled engine, the model's own size first."""
        with self._lock:
            return [(e.input.height, e.input.width)
                    for e in dict.fromkeys(self._engines.values())]

    def describe(self) -> dict[str, object]:
        """For the retained `info` message: mode, whether shapes change, and why not."""
        return {"mode": self.mode, "rectangular": self.notice is None
                and self.input_size != "square", "notice": self.notice}

    def close(self) -> None:
        """Wait for compiles in flight, close the engines made here (the base engine is
        its owner's to close); later frames get the base engine."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.join()
        with self._lock:
            made = [e for e in dict.fromkeys(self._engines.values()) if e is not self.base]
            self._engines = {(self.base.input.height, self.base.input.width): self.base}
            self._by_frame.clear()
        for engine in made:
            engine.close()
