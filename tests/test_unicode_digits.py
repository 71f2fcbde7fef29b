"""Text that str.isdigit() accepts but int() refuses ('²', '①', superscripts mixed in)
reached int() in several parsers and crashed them with a traceback (check-config on a
class key '²', found by an adversarial review). Each parser of a number in text must
treat such text as not a number: one table over every place that parses one."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from edge_agent.camera_filter import class_id
from edge_agent.config.model import HealthConfig
from edge_agent.events.camera import class_filter
from engines.backend import version_tuple
from engines.engine_cache import split_ultralytics_header
from engines.input_size import DEFAULT_STRIDE, model_stride

NOT_NUMBERS = ["²", "¹²", "①", "3²"]


def _metrics_address(text: str) -> object:
    try:
        return HealthConfig(metrics_address=f"127.0.0.1:{text}").metrics_address
    except ValidationError:
        return "refused"


def _header_names(text: str) -> object:
    data = json.dumps({"names": {text: "x", "0": "y"}}).encode()
    return split_ultralytics_header(len(data).to_bytes(4, "little") + data + b"plan")[0]["names"]


PARSERS: dict[str, tuple[Callable[[str], object], Callable[[str, object], bool]]] = {
    "class key": (lambda t: class_id(t, ("person", "car")), lambda t, r: r is None),
    "zone classes": (lambda t: class_filter([t], ("person", "car"), "zone z"),
                     lambda t, r: r == frozenset()),
    "metrics port": (_metrics_address, lambda t, r: r == "refused"),
    "runtime version": (lambda t: version_tuple(f"2024.{t}"),
                        lambda t, r: r in ((2024,), (2024, 3))),  # "3²": its 3 reads
    "model stride": (lambda t: model_stride({"stride": t}), lambda t, r: r == DEFAULT_STRIDE),
    "engine header names": (_header_names, lambda t, r: repr(t) in str(r)),
}


@pytest.mark.parametrize("text", NOT_NUMBERS)
@pytest.mark.parametrize("parser", PARSERS, ids=list(PARSERS))
def test_digit_like_text_is_not_a_number_anywhere(parser: str, text: str) -> None:
    parse, expected = PARSERS[parser]
    result = parse(text)  # no ValueError from int()
    assert expected(text, result), result
