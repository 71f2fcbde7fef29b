"""The sample YOLOX-nano through the real OpenVINO engine finds what a person sees.

Expectations were recorded once from this model (f32) and checked by eye against the
pictures: each box is an object a person sees there (the TV and the standing man in
139, the bed in 632, the skier and skis in 785, the two people in 872, the two dogs in
pets, the cat, the big kite and the two near kite-flyers in kite_and_cold). Only
confident, unambiguous objects are listed; extra detections are allowed. bf16 (the
CPU default) must match them too, at IoU >= 0.5, with the uint8 -> float conversion
inside the model or on the host.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.model_info import read_labels
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, postprocess
from engines.preprocess import prepare
from tests.helpers import iou

EXPECTED: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = {
    "000000000139.jpg": [("tvmonitor", (7, 167, 156, 263)), ("person", (427, 165, 470, 296))],
    "000000000632.jpg": [("bed", (2, 282, 396, 476)), ("pottedplant", (344, 227, 430, 353))],
    "000000000785.jpg": [("person", (278, 55, 492, 385)), ("skis", (220, 361, 534, 399))],
    "000000000872.jpg": [("person", (147, 131, 412, 614)), ("person", (281, 109, 438, 596))],
    "000000001000.jpg": [("person", (261, 91, 357, 423)), ("person", (511, 191, 639, 472)),
                         ("person", (120, 148, 197, 387)), ("person", (40, 187, 111, 395))],
    "pets.jpg": [("dog", (109, 35, 256, 296)), ("dog", (344, 174, 496, 368))],
    "cat_720p.jpg": [("cat", (101, 105, 949, 712))],
    "kite_and_cold.jpg": [("kite", (591, 77, 673, 155)), ("person", (112, 608, 167, 763)),
                          ("person", (210, 685, 276, 868))],
}


@pytest.fixture(
    scope="module",
    params=[("f32", False), ("auto", False), ("auto", True)],
    ids=["f32-model-convert", "auto-model-convert", "auto-host-convert"],
)
def engine(request: pytest.FixtureRequest, samples: Path):
    names = read_labels(samples / "models" / "coco_labels.txt")
    precision, host_convert = request.param
    with OpenVinoEngine(
        samples / "models" / "yolox_nano.onnx",
        class_names=names,
        precision=precision,
        host_convert=host_convert,
    ) as loaded:
        yield loaded


@pytest.mark.parametrize("image_name", sorted(EXPECTED))
def test_finds_what_a_person_sees(engine: OpenVinoEngine, samples: Path, image_name: str) -> None:
    image = cv2.imread(str(samples / "images" / image_name))
    tensor, letterbox = prepare(image, engine.input)
    result = engine.infer(tensor)
    found = postprocess(
        engine.info.family, result.outputs, engine.input, DetectionFilter(score_threshold=0.3),
        letterbox, image.shape[1], image.shape[0],
    )
    labels = [engine.info.class_names[c] for c in found.class_ids]
    for label, box in EXPECTED[image_name]:
        overlaps = [
            iou(np.array(box, np.float32), found.boxes[i])
            for i in range(len(found)) if labels[i] == label
        ]
        assert overlaps, f"no {label} in {image_name}; found {labels}"
        assert max(overlaps) >= 0.5, f"{label} in {image_name}: best IoU {max(overlaps):.2f}"
    assert np.all(found.boxes[:, 2] <= image.shape[1])
    assert np.all(found.boxes[:, 3] <= image.shape[0])


def test_model_info_read_from_the_file(engine: OpenVinoEngine, samples: Path) -> None:
    assert engine.info.family == "yolox"
    assert (engine.input.height, engine.input.width) == (416, 416)
    assert engine.info.sha256.startswith("695e750a")
    assert engine.info.output_shapes == ((1, 3549, 85),)
    assert engine.parallelism >= 1
