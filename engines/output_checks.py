"""Checks on a model's raw outputs before postprocessing (re-exported by engines.postprocess).

Kept apart so the postprocessing module stays about boxes; the checks after the decode
math (overflow, logits) live where the math is, in engines.postprocess._finish.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class NonFiniteOutputError(ValueError):
    """Every value a model produced for a frame is NaN or infinite."""


def count_nonfinite(outputs: Sequence[np.ndarray]) -> int:
    """How many output values are NaN or +-inf (postprocessing drops the boxes they touch).

    Raises NonFiniteOutputError when no value at all is finite: no box can be made,
    and the usual cause is a model that overflows in fp16.
    """
    bad = total = 0
    for output in outputs:
        array = np.asarray(output)
        if array.dtype.kind != "f":
            total += array.size
            continue
        bad += array.size - int(np.count_nonzero(np.isfinite(array)))
        total += array.size
    if total and bad == total:
        raise NonFiniteOutputError(
            f"every model output value is NaN or infinite ({bad} values); the usual cause "
            "is fp16 overflow: run the model at full precision (backend.precision: f32 on "
            "OpenVINO, fp32 on TensorRT) or re-export it"
        )
    return bad
