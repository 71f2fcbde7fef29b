"""What NNCF is given: the graph as the CPU plugin runs it, activations fused.

ONNX exporters spell activations as several ops (SiLU as Sigmoid * x, GELU with Erf,
...). Quantized as read, NNCF puts FakeQuantize inside the activation, the plugin cannot
fuse it into the convolution and the INT8 build runs slower than FP (0.65x on the sample
YOLOX-nano). Each row is one activation as exporters write it; every FakeQuantize of the
build must feed a convolution.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
nncf = pytest.importorskip("nncf")
import openvino as ov  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engines.errors import EngineError  # noqa: E402
from engines.int8 import source_model  # noqa: E402

Node = helper.make_node


def _silu(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("Sigmoid", [x], ["s"]), Node("Mul", [x, "s"], ["a"])]


def _silu_swapped(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("Sigmoid", [x], ["s"]), Node("Mul", ["s", x], ["a"])]


def _hardswish_relu6(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("Add", [x, c("three", 3.0)], ["p"]),
            Node("Clip", ["p", c("lo", 0.0), c("hi", 6.0)], ["r"]),
            Node("Mul", [x, "r"], ["m"]), Node("Div", ["m", c("six", 6.0)], ["a"])]


def _gelu(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("Div", [x, c("root2", 2 ** 0.5)], ["d"]), Node("Erf", ["d"], ["e"]),
            Node("Add", ["e", c("one", 1.0)], ["e1"]), Node("Mul", [x, "e1"], ["m"]),
            Node("Mul", ["m", c("half", 0.5)], ["a"])]


def _mish(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("Softplus", [x], ["sp"]), Node("Tanh", ["sp"], ["t"]),
            Node("Mul", [x, "t"], ["a"])]


def _hardswish(x: str, c: Callable[[str, float], str]) -> list:
    return [Node("HardSigmoid", [x], ["s"], alpha=1 / 6, beta=0.5), Node("Mul", [x, "s"], ["a"])]


ACTIVATIONS = {"silu": _silu, "silu_swapped": _silu_swapped, "hardswish": _hardswish,
               "hardswish_relu6": _hardswish_relu6, "gelu": _gelu, "mish": _mish}


def conv_act_conv(activation: str, path: Path) -> Path:
    """ONNX: 1x3x32x32 -> Conv 3x3 (bias) -> activation -> Conv 1x1 -> 1x8x32x32."""
    rng = np.random.default_rng(0)
    arrays = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, (8,)),
              "w2": rng.normal(0, 0.3, (8, 8, 1, 1))}

    def constant(name: str, value: float) -> str:
        arrays[name] = np.array(value)
        return name

    nodes = [Node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             *ACTIVATIONS[activation]("c", constant), Node("Conv", ["a", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, activation, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def fake_quantize_feeds(model: ov.Model) -> collections.Counter:
    """Op types that take a FakeQuantize output, counted."""
    return collections.Counter(
        port.get_node().get_type_name() for op in model.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize" for port in op.output(0).get_target_inputs())


def _quantized(model: ov.Model) -> ov.Model:
    logging.getLogger("nncf").setLevel(logging.WARNING)
    data = [np.random.default_rng(i).normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
            for i in range(8)]
    return nncf.quantize(model, nncf.Dataset(data), subset_size=8, fast_bias_correction=True)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_fake_quantize_feeds_only_the_convolutions(activation: str, tmp_path: Path) -> None:
    path = conv_act_conv(activation, tmp_path / f"{activation}.onnx")
    feeds = fake_quantize_feeds(_quantized(source_model(path)))
    assert set(feeds) == {"Convolution"}, f"{activation}: FakeQuantize feeds {dict(feeds)}"


def test_the_onnx_graph_as_read_would_split_silu(tmp_path: Path) -> None:
    """The check above can fail: the same SiLU read raw gets FakeQuantize on its Multiply."""
    path = conv_act_conv("silu", tmp_path / "silu.onnx")
    feeds = fake_quantize_feeds(_quantized(ov.Core().read_model(str(path))))
    assert feeds["Multiply"] >= 1, dict(feeds)


def test_the_model_keeps_its_onnx_metadata(tmp_path: Path) -> None:
    """Class names in ONNX metadata_props (Ultralytics) must reach the INT8 IR."""
    path = conv_act_conv("silu", tmp_path / "named.onnx")
    model = onnx.load(path)
    onnx.helper.set_model_props(model, {"names": "{0: 'person', 1: 'car'}", "imgsz": "[32, 32]"})
    onnx.save(model, path)
    converted = source_model(path)
    assert converted.get_rt_info(["framework", "names"]).astype(str) == "{0: 'person', 1: 'car'}"


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08\x07" * 50])
def test_an_unreadable_model_is_an_engine_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    before = _logging_state()
    with pytest.raises(EngineError, match=r"broken\.onnx") as raised:
        source_model(path)
    assert "Exception from" not in str(raised.value)  # OpenVINO's C++ location, not a reason
    assert _logging_state() == before



def _logging_state() -> tuple:
    root = logging.getLogger()
    return root.level, list(root.handlers), list(root.filters)


def test_an_ir_written_raw_is_fused_too(tmp_path: Path) -> None:
    """An IR saved from the ONNX as read (activations still split) gets the same fusions."""
    raw = ov.Core().read_model(str(conv_act_conv("silu", tmp_path / "silu.onnx")))
    ov.serialize(raw, str(tmp_path / "raw.xml"))
    assert "Multiply" in {op.get_type_name() for op in ov.Core().read_model(
        str(tmp_path / "raw.xml")).get_ordered_ops()}
    feeds = fake_quantize_feeds(_quantized(source_model(tmp_path / "raw.xml")))
    assert set(feeds) == {"Convolution"}, dict(feeds)


def test_preparing_a_model_leaves_the_logging_alone(tmp_path: Path) -> None:
    """OpenVINO's converter (`ov.convert_model`) sets the root logger to ERROR while it
    runs; the agent's logging (the journal) must be the same during and after."""
    path = conv_act_conv("gelu", tmp_path / "gelu.onnx")
    before = _logging_state()
    source_model(path)
    assert _logging_state() == before
