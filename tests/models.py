"""Real, deliberately broken models built from the sample YOLOX with OpenVINO's graph API.

No `onnx` package is needed: OpenVINO reads the sample ONNX, adds a node, and saves an
IR (.xml + .bin) that the agent loads like any other model.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def _sample(samples: Path) -> ov.Model:
    return ov.Core().read_model(str(samples / "models" / "yolox_nano.onnx"))


def poisoned_model(
    samples: Path, out: Path, value: float, rows: int | None = None, column: int | None = None
) -> Path:
    """The sample whose output rows [0, rows) (every row when None) are multiplied by
    `value` (inf, -inf or nan), in one `column` only (4: objectness) or all of them: an
    fp16 overflow in miniature."""
    model = _sample(samples)
    result = model.get_results()[0].input_value(0)
    anchors, columns = (result.get_partial_shape()[i].get_length() for i in (1, 2))
    factor = np.ones((1, anchors, columns), np.float32)
    factor[:, : anchors if rows is None else rows, slice(None) if column is None else column] = (
        value
    )
    poisoned = ops.multiply(result, ops.constant(factor))
    built = ov.Model([poisoned.output(0)], model.get_parameters(), "poisoned")
    path = out.with_suffix(".xml")
    ov.save_model(built, str(path), compress_to_fp16=False)
    return path


def batch_model(samples: Path, out: Path, batch: int = 4) -> Path:
    """The sample exported with a fixed batch (as `export(batch=4)` would do)."""
    model = _sample(samples)
    shape = list(model.inputs[0].get_partial_shape().to_shape())
    model.reshape({0: [batch, *shape[1:]]})
    path = out.with_suffix(".xml")
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def dynamic_batch_model(samples: Path, out: Path) -> Path:
    """The sample with a dynamic batch dimension (which the agent pins to 1)."""
    model = _sample(samples)
    shape = list(model.inputs[0].get_partial_shape().to_shape())
    model.reshape({0: ov.PartialShape([-1, *shape[1:]])})
    path = out.with_suffix(".xml")
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def slow_model(samples: Path, out: Path, channels: int = 128, kernel: int = 15) -> Path:
    """The sample behind three heavy convolutions on its input (3 -> C -> C -> 3
    channels): inference takes seconds on a small CPU, so a request is still running
    when a test cancels it or stops the agent. Its detections are meaningless."""
    model = _sample(samples)
    image = model.get_parameters()[0]
    consumers = list(image.output(0).get_target_inputs())
    rng = np.random.default_rng(0)
    pad = [kernel // 2] * 2
    node = image
    for c_in, c_out in ((3, channels), (channels, channels), (channels, 3)):
        weights = rng.random((c_out, c_in, kernel, kernel), np.float32) / (c_in * kernel**2)
        node = ops.convolution(node, ops.constant(weights), [1, 1], pad, pad, [1, 1])
    for target in consumers:
        target.replace_source_output(node.output(0))
    built = ov.Model([r.input_value(0) for r in model.get_results()], [image], "slow")
    path = out.with_suffix(".xml")
    ov.save_model(built, str(path), compress_to_fp16=False)
    return path


def shaped_model(
    out: Path, output_shape: list[int], input_shape: list[int] | None = None,
    fill: float = 0.0,
) -> Path:
    """A tiny real model whose one output has `output_shape`, every value `fill` (plus the
    input's mean times zero, so the output depends on the input and is not folded away).

    `input_shape` may hold -1 (dynamic). For models whose outputs can never fit a
    family's postprocessing, and for models whose values overflow in it.
    """
    image = ops.parameter(ov.PartialShape(input_shape or [1, 3, 416, 416]), ov.Type.f32,
                          name="images")
    mean = ops.reduce_mean(image, ops.constant(np.array([0, 1, 2, 3])), False)
    scaled = ops.multiply(mean, ops.constant(np.float32(0.0)))
    values = ops.constant(np.full(output_shape, fill, np.float32))
    output = ops.add(values, scaled)
    path = out.with_suffix(".xml")
    ov.save_model(ov.Model([output.output(0)], [image], "shaped"), str(path),
                  compress_to_fp16=False)
    return path


def dynamic_size_model(samples: Path, out: Path) -> Path:
    """The sample with dynamic height and width and its `imgsz` (416) in the IR's
    metadata, as an Ultralytics export with dynamic=True has."""
    model = _sample(samples)
    model.reshape({0: ov.PartialShape([1, 3, -1, -1])})
    model.set_rt_info("[416, 416]", ["model_info", "imgsz"])
    path = out.with_suffix(".xml")
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def fixed_grid_model(samples: Path, out: Path) -> Path:
    """The sample times a constant of its own output shape ([1, 3549, 85] ones): same
    detections, but the 416x416 grid is fixed inside the graph, so it cannot reshape
    (as a static Ultralytics export with its anchors baked in)."""
    return poisoned_model(samples, out, 1.0)


def ir_tar(xml: Path, archive: Path | None = None) -> Path:
    """An IR as model/deploy takes it: one .tar with the .xml and its .bin."""
    archive = archive or xml.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(xml, arcname="model.xml")
        tar.add(xml.with_suffix(".bin"), arcname="model.bin")
    return archive
