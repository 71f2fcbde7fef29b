"""Every place a config names a class refuses what is no class of any model, at its line:
a negative id, an id above MAX_CLASS_ID (also as text), an empty name. Before, zones,
lines, model.classes and homeassistant.classes let them through: on a model without class
names `-1` crashed Home Assistant discovery at start (labels[-1] of none) and a huge id in
model.classes or detect made the agent die at start (OverflowError, a 149 GiB table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.camera_filter import class_id
from edge_agent.config.detect import MAX_CLASS_ID
from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError

PLACES = {
    "model.classes": ("model", "  classes: [{key}]\n", "model.classes[0]"),
    "homeassistant.classes": ("top", "homeassistant: {{enabled: true, classes: [{key}]}}\n",
                              "homeassistant.classes[0]"),
    "zone classes": ("camera", "    zones:\n      - {{name: z, points: [[0, 0], [1, 0], "
                     "[1, 1]], classes: [{key}]}}\n", "cameras[0].zones[0].classes[0]"),
    "line classes": ("camera", "    lines:\n      - {{name: l, points: [[0, 0], [1, 1]], "
                     "classes: [{key}]}}\n", "cameras[0].lines[0].classes[0]"),
    "mask classes": ("camera", "    masks:\n      - {{name: m, points: [[0, 0], [1, 0], "
                     "[1, 1]], classes: [{key}]}}\n", "cameras[0].masks[0].classes[0]"),
    "min_score key": ("camera", "    detect: {{min_score: {{{key}: 0.5}}}}\n",
                      "cameras[0].detect.min_score."),
    "min_area key": ("camera", "    detect: {{min_area: {{{key}: 0.01}}}}\n",
                     "cameras[0].detect.min_area."),
}
BAD = ["-1", str(MAX_CLASS_ID + 1), "100000000000000000000", '"70000"', '""', '" "']


def config_text(place: str, key: str) -> str:
    """The config with `key` (as YAML) in `place`; a mapping key is written quoted, as
    YAML keys must be text (docs/config.md)."""
    where, block, _ = PLACES[place]
    if place.endswith("key") and not key.startswith('"'):
        key = f'"{key}"'
    model = "model:\n  path: m.onnx\n" + (block.format(key=key) if where == "model" else "")
    top = block.format(key=key) if where == "top" else ""
    camera = block.format(key=key) if where == "camera" else ""
    return (f"device_id: b\n{model}{top}cameras:\n  - id: c\n    type: usb\n{camera}")


@pytest.mark.parametrize("key", BAD)
@pytest.mark.parametrize("place", PLACES)
def test_no_class_of_any_model_is_refused_at_its_line(
    tmp_path: Path, place: str, key: str
) -> None:
    if place.endswith("key") and key == "-1":
        pytest.skip('a mapping key is text: "-1" is a name there, checked against the model')
    path = tmp_path / "agent.yaml"
    path.write_text(config_text(place, key))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    where = PLACES[place][2]
    assert any(where in problem and "is not a class" in problem
               for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("key", [0, 2, "2", MAX_CLASS_ID, "person"])
@pytest.mark.parametrize("place", PLACES)
def test_real_class_keys_pass(tmp_path: Path, place: str, key: int | str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(config_text(place, json.dumps(key)))
    load_config(path)


@pytest.mark.parametrize("key", [-1, MAX_CLASS_ID + 1, "-1", str(10**20)])
def test_class_id_never_resolves_an_impossible_id_even_without_names(key: int | str) -> None:
    """A model without class names cannot range-check an id: the bound still holds."""
    assert class_id(key, ()) is None
    assert class_id(key, ("person", "car")) is None
