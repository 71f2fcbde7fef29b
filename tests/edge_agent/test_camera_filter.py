"""A camera's own detection rules: per-class least score and area, masks in normalized and
pixel units with the bottom-centre anchor, and class names checked against the model with
FILE:LINE. Tables plus a property check of the vectorised point-in-polygon test."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.camera_filter import (
    CameraFilter,
    FilterStats,
    check_classes,
    class_id,
    inside,
    unknown_class,
)
from edge_agent.cli import main
from edge_agent.config.detect import MAX_CLASS_ID, DetectConfig, MaskConfig
from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError
from engines.base import Detections
from tests.helpers import onnx_metadata_entry

NAMES = ("person", "bicycle", "car", "traffic_light")
W, H = 640, 480


def detections(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """(x1, y1, x2, y2, score, class_id) rows."""
    table = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(table[:, :4].astype(np.float32), table[:, 4].astype(np.float32),
                      table[:, 5].astype(np.int32), nonfinite=2, scores_clipped=1)


def kept(rules: CameraFilter, found: Detections) -> list[int]:
    """Indexes (into `found`) of what passes; `filter` returns exactly those, in order."""
    indexes = np.flatnonzero(rules.keep(found, W, H))
    out = rules.filter(found, W, H)
    assert np.array_equal(out.boxes, found.boxes[indexes])
    assert np.array_equal(out.class_ids, found.class_ids[indexes])
    assert out.nonfinite == 2
    assert out.scores_clipped == 1
    return indexes.tolist()


# (min_score, min_area, rows, indexes kept)
THRESHOLDS = [
    ({"person": 0.5}, {}, [(0, 0, 50, 50, 0.49, 0), (0, 0, 50, 50, 0.5, 0),
                           (0, 0, 50, 50, 0.2, 2)], [1, 2]),
    ({"2": 0.6, "traffic light": 0.7}, {}, [(0, 0, 9, 9, 0.65, 2), (0, 0, 9, 9, 0.55, 2),
                                             (0, 0, 9, 9, 0.69, 3)], [0]),
    ({}, {"car": 0.01}, [(0, 0, 55, 55, 0.9, 2), (0, 0, 56, 56, 0.9, 2),
                         (0, 0, 5, 5, 0.9, 0)], [1, 2]),  # 1 % of 640x480 = 3072 px
    ({}, {"person": 400}, [(0, 0, 20, 19.9, 0.9, 0), (0, 0, 20, 20, 0.9, 0)], [1]),
    ({}, {"person": 1.0}, [(0, 0, 640, 480, 0.9, 0), (0, 0, 639, 480, 0.9, 0)], [0]),
    ({"person": 0.5}, {"person": 100}, [(0, 0, 5, 5, 0.9, 0), (0, 0, 50, 50, 0.4, 0),
                                         (0, 0, 50, 50, 0.6, 0), (0, 0, 1, 1, 0.1, 7)],
     [2, 3]),  # class 7 is not the model's: no rule applies to it
]


@pytest.mark.parametrize(("min_score", "min_area", "rows", "expected"), THRESHOLDS)
def test_per_class_score_and_area(min_score: dict, min_area: dict, rows: list,
                                  expected: list[int]) -> None:
    rules = CameraFilter(DetectConfig(min_score=min_score, min_area=min_area), [], NAMES)
    assert kept(rules, detections(*rows)) == expected


ROAD = MaskConfig(name="road", points=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])
ROAD_PX = MaskConfig(name="road", units="pixels",
                     points=[(0, 240), (640, 240), (640, 480), (0, 480)])
TV = MaskConfig(name="tv", units="pixels", points=[(100, 50), (200, 50), (150, 150)],
                classes=["person"])

# (masks, box rows, kept). Anchors: bottom-centre of each box.
MASKS = [
    ([ROAD], [(10, 10, 50, 230, 0.9, 0), (10, 10, 50, 250, 0.9, 0)], [0]),
    ([ROAD_PX], [(10, 10, 50, 230, 0.9, 0), (10, 10, 50, 250, 0.9, 0)], [0]),
    # A box whose top is in the mask but whose feet are not is kept, and the reverse not.
    ([ROAD], [(10, 200, 50, 230, 0.9, 2), (10, 100, 50, 300, 0.9, 2)], [0]),
    # Feet on the frame's bottom edge, or its right edge, are inside a mask drawn to it.
    ([ROAD], [(600, 400, 640, 480, 0.9, 0), (0, 300, 40, 480, 0.9, 0)], []),
    # A triangle for people only: the car at the same place is kept.
    ([TV], [(140, 20, 160, 100, 0.9, 0), (140, 20, 160, 100, 0.9, 2),
            (180, 20, 200, 140, 0.9, 0)], [1, 2]),
    ([ROAD, TV], [(140, 20, 160, 100, 0.9, 0), (10, 10, 50, 250, 0.9, 1),
                  (300, 0, 320, 100, 0.9, 0)], [2]),
]


@pytest.mark.parametrize(("masks", "rows", "expected"), MASKS)
def test_masks_ignore_detections_whose_anchor_is_inside(masks: list, rows: list,
                                                        expected: list[int]) -> None:
    rules = CameraFilter(DetectConfig(), masks, NAMES)
    assert kept(rules, detections(*rows)) == expected
    once = CameraFilter(DetectConfig(), masks, NAMES)
    once.filter(detections(*rows), W, H)
    assert once.stats().mask == len(rows) - len(expected)


def test_normalized_masks_follow_the_frame_size() -> None:
    rules = CameraFilter(DetectConfig(), [ROAD], NAMES)
    box = detections((10, 10, 50, 300, 0.9, 0))
    assert len(rules.filter(box, 640, 480)) == 0  # feet at y 300 of 480: below the middle
    assert len(rules.filter(box, 640, 720)) == 1  # of 720: above it


def test_pixel_masks_beyond_the_frame_are_clipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    big = MaskConfig(name="wide", units="pixels",
                     points=[(0, 0), (1920, 0), (1920, 100), (0, 100)])
    rules = CameraFilter(DetectConfig(), [big], NAMES)
    assert len(rules.filter(detections((600, 0, 630, 50, 0.9, 0)), W, H)) == 0
    assert "wide" in caplog.text
    assert "640x480" in caplog.text


def test_the_reasons_are_counted_once_each() -> None:
    rules = CameraFilter(DetectConfig(min_score={"person": 0.5}, min_area={"person": 100}),
                         [ROAD], NAMES)
    rules.filter(detections((0, 0, 5, 5, 0.1, 0), (0, 0, 5, 5, 0.9, 0),
                            (0, 0, 50, 300, 0.9, 0), (0, 0, 50, 100, 0.9, 0)), W, H)
    stats = rules.stats()
    assert (stats.min_score, stats.min_area, stats.mask) == (1, 1, 1)


def test_no_rules_returns_the_same_object() -> None:
    found = detections((0, 0, 5, 5, 0.1, 0))
    assert CameraFilter(DetectConfig(), [], NAMES).filter(found, W, H) is found


@pytest.mark.parametrize("seed", range(6))
def test_inside_agrees_with_opencv_on_random_polygons(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A star-shaped polygon (never self-intersecting): random radii at sorted angles.
    count = int(rng.integers(3, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(20, 200, count)
    polygon = np.stack([320 + radii * np.cos(angles), 240 + radii * np.sin(angles)], 1)
    points = rng.uniform(0, 640, (500, 2))
    ours = inside(points, polygon)
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    distance = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True)
                         for x, y in points])
    clear = np.abs(distance) > 1e-3  # points on an edge may go either way
    assert np.array_equal(ours[clear], distance[clear] > 0)


@pytest.mark.parametrize(("key", "expected"), [
    ("person", 0), ("traffic light", 3), ("traffic_light", 3), ("2", 2), (3, 3), ("4", None),
    (4, None), ("persn", None), ("", None),
])
def test_class_keys_resolve_by_name_then_id(key: str | int, expected: int | None) -> None:
    assert class_id(key, NAMES) == expected


def test_unknown_classes_are_refused_at_load_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent("""\
        device_id: box-1
        model: {path: m.onnx}
        cameras:
          - id: street
            type: file
            path: clip.mp4
            detect:
              min_score: {person: 0.5, persn: 0.4}
              min_area:
                "9": 0.01
            masks:
              - name: tv
                points: [[0, 0], [1, 0], [1, 1]]
                classes: [car, 12]
        """))
    config = load_config(path)
    many = ("person", "persn", "car", *(f"class{i}" for i in range(10)))  # ids 0-12
    check_classes(config, many, path)  # every class known: no error
    disabled = config.model_copy(update={"cameras": [
        config.cameras[0].model_copy(update={"enabled": False}),
        config.cameras[0].model_copy(update={"id": "other", "detect": DetectConfig(),
                                             "masks": []})]})
    check_classes(disabled, NAMES, path)  # checked when a reload enables it
    with pytest.raises(ConfigError) as error:
        check_classes(config, NAMES, path)
    lines = str(error.value).splitlines()
    assert lines == [
        f"{path}:8: cameras[0].detect.min_score.persn: 'persn' is not a class of this model "
        "(did you mean 'person'?); allowed: an id 0 to 3 or one of person, bicycle, car, "
        "traffic_light",
        f"{path}:10: cameras[0].detect.min_area.9: '9' is not a class of this model; "
        "allowed: an id 0 to 3 or one of person, bicycle, car, traffic_light",
        f"{path}:14: cameras[0].masks[0].classes[1]: '12' is not a class of this model; "
        "allowed: an id 0 to 3 or one of person, bicycle, car, traffic_light",
    ]


def test_a_replacing_filter_keeps_counting_where_the_old_one_stopped() -> None:
    old = CameraFilter(DetectConfig(min_score={"person": 0.5}), [], NAMES)
    old.filter(detections((0, 0, 5, 5, 0.1, 0)), W, H)
    new = CameraFilter(DetectConfig(min_area={"person": 100}), [ROAD], NAMES, old)
    new.filter(detections((0, 0, 5, 5, 0.9, 0), (0, 0, 50, 300, 0.9, 0)), W, H)
    assert new.stats() == FilterStats(min_score=1, min_area=1, mask=1)


def _check_config(tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str],
                  code: int, *, model: str = "", tail: str = "") -> str:
    """check-config's output on the sample model with its labels file: `model` is added to
    the model mapping, `tail` after the camera; the exit code must be `code`."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        "device_id: b\n"
        f"model: {{path: {samples}/models/yolox_nano.onnx, "
        f"labels: {samples}/models/coco_labels.txt{model}}}\n"
        f"cameras:\n  - id: v\n    type: file\n    path: {samples}/media/vtest.mp4\n" + tail)
    assert main(["check-config", str(config)]) == code
    out = capsys.readouterr()
    return out.out + out.err


@pytest.mark.parametrize(("camera", "code", "expected"), [
    ("    zones:\n      - {name: z, points: [[0, 0], [1, 0], [1, 1]], classes: [persn, 0]}\n",
     0, "agent.yaml:8: camera v, zone z: class 'persn' is not one of the class names"),
    ("    lines:\n      - {name: l, points: [[0.5, 0], [0.5, 1]], classes: [car, 99]}\n",
     0, "agent.yaml:8: camera v, line l: class 99 is not one of the class names"),
    ("    detect: {min_score: {persn: 0.5}}\n", 2,
     ":7: cameras[0].detect.min_score.persn: 'persn' is not a class of this model"),
    ("    masks:\n      - {name: m, points: [[0, 0], [1, 0], [1, 1]], classes: [kat]}\n", 2,
     "cameras[0].masks[0].classes[0]: 'kat' is not a class of this model"),
    ("    zones:\n      - {name: z, points: [[0, 0], [1, 0], [1, 1]], classes: [person]}\n",
     0, "OK"),
    ("homeassistant:\n  classes: [person, persn]\n", 0,
     "agent.yaml:8: homeassistant.classes: 'persn' is not one of the class names"),
])
def test_check_config_checks_class_names_against_the_labels_file(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], camera: str, code: int,
    expected: str,
) -> None:
    """The reviewers' case: a misspelt class passed check-config and only `run` said so."""
    out = _check_config(tmp_path, samples, capsys, code, tail=camera)
    assert expected in out
    if expected == "OK":
        assert "warning" not in out


NAMES_80 = "{" + ", ".join(f"{i}: 'class{i}'" for i in range(79)) + ", 79: 'person'}"
"""Ultralytics' `names` metadata for an 80-class model whose last class is `person`."""


def _model_stating_names(form: str, samples: Path, folder: Path) -> Path:
    """The sample model, or a file standing for one, that states NAMES_80 in `form`."""
    source = samples / "models" / "yolox_nano.onnx"
    if form == "onnx-metadata":
        model = folder / "m.onnx"
        model.write_bytes(source.read_bytes() + onnx_metadata_entry(b"names", NAMES_80.encode()))
    elif form == "ir-rt-info":
        import openvino as ov

        graph = ov.Core().read_model(str(source))
        graph.set_rt_info(NAMES_80, ["framework", "names"])
        model = folder / "m.xml"
        ov.save_model(graph, str(model))
    elif form == "sidecar-yaml":
        model = folder / "m.onnx"
        model.write_bytes(source.read_bytes())
        (folder / "metadata.yaml").write_text(f"names: {NAMES_80}\n")
    else:  # an Ultralytics TensorRT engine: JSON header, then the plan (not read here)
        header = json.dumps({"names": {str(i): f"class{i}" for i in range(79)} | {"79": "person"}})
        model = folder / "m.engine"
        model.write_bytes(len(header).to_bytes(4, "little") + header.encode() + b"\0" * 64)
    return model


@pytest.mark.parametrize("form", ["onnx-metadata", "ir-rt-info", "sidecar-yaml", "engine-header"])
@pytest.mark.parametrize(("camera", "code", "expected"), [
    ("    detect: {min_score: {persn: 0.5}}\n", 2,
     "cameras[0].detect.min_score.persn: 'persn' is not a class of this model"),
    ("    zones:\n      - {name: z, points: [[0, 0], [1, 0], [1, 1]], classes: [car]}\n", 0,
     "agent.yaml:8: camera v, zone z: class 'car' is not one of the class names in"),
    ("    detect: {min_score: {person: 0.5, class3: 0.4}}\n", 0, "OK"),
])
def test_check_config_checks_class_names_the_model_file_states(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], form: str, camera: str,
    code: int, expected: str,
) -> None:
    """Without a labels file the names are the model's own (Ultralytics exports carry
    them): check-config reads them from the file, as the backend will, without compiling."""
    model = _model_stating_names(form, samples, tmp_path)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: b\nmodel: {{path: {model}}}\ncameras:\n  - id: v\n    type: file\n"
        f"    path: {samples}/media/vtest.mp4\n" + camera)
    assert main(["check-config", str(config)]) == code
    out = capsys.readouterr()
    assert expected in out.out + out.err


def test_check_config_leaves_names_to_the_load_when_the_model_states_none(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YOLOX states no names: any class name may be right, so only the load can say."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: b\nmodel: {{path: {samples}/models/yolox_nano.onnx}}\ncameras:\n"
        f"  - id: v\n    type: file\n    path: {samples}/media/vtest.mp4\n"
        "    detect: {min_score: {persn: 0.5}}\n")
    assert main(["check-config", str(config)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize(("classes", "code", "expected"), [
    ("[persn]", 2, ":2: model.classes[0]: 'persn' is not a class of this model (did you "
                     "mean 'person'?)"),
    ("[person, 80]", 2, "model.classes[1]: '80' is not a class of this model; allowed: an id 0 "
                        "to 79"),
    ("[person, traffic light, 2]", 0, "OK"),
])
def test_check_config_checks_the_model_class_allow_list(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], classes: str, code: int,
    expected: str,
) -> None:
    """model.classes is the other place a class is named: refused at start, so here too."""
    assert expected in _check_config(tmp_path, samples, capsys, code,
                                     model=f", classes: {classes}")


@pytest.mark.parametrize("model_bytes", [
    pytest.param(lambda onnx: b"\x08\x07not a model at all" * 10, id="not-protobuf"),
    pytest.param(lambda onnx: onnx + onnx_metadata_entry(b"names", b"{0: 'person', 2: 'car'}"),
                 id="names-with-a-gap"),
    pytest.param(lambda onnx: onnx + onnx_metadata_entry(b"names", b"__import__('os')"),
                 id="names-not-a-literal"),
])
def test_check_config_says_when_it_could_not_read_the_models_class_names(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], model_bytes
) -> None:
    """A model whose names cannot be read passed check-config with a bare OK, misspelt
    classes and all, though `run` refuses it: say the names were not checked, and why."""
    model = tmp_path / "m.onnx"
    model.write_bytes(model_bytes((samples / "models" / "yolox_nano.onnx").read_bytes()))
    out = checked(tmp_path, samples, capsys, f"path: {model}",
                  "    detect: {min_score: {bicyclez: 0.5}}\n")
    assert "warning: class names not checked:" in out
    assert str(model) in out


def test_the_class_list_in_an_error_is_cut_at_a_name() -> None:
    text = unknown_class("kat", [f"class_number_{i}" for i in range(80)])
    assert text.endswith(", ...")
    assert ",  " not in text


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[: len(data) // 3], id="onnx-cut-short"),
    pytest.param(lambda data: data[:100], id="onnx-first-100-bytes"),
    pytest.param(lambda data: b"\x08\x07not a model at all" * 10, id="not-protobuf"),
    pytest.param(lambda data: b"<html>404 Not Found</html>", id="an-error-page"),
])
def test_check_config_warns_of_a_model_file_run_would_refuse_even_with_labels(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], damage
) -> None:
    """With a labels file the model's names are not needed, so its file was never read:
    a copy cut short passed with a bare OK (the README says check-config tells whether
    the box can load the model). Its structure is walked; nothing is compiled."""
    model = tmp_path / "m.onnx"
    model.write_bytes(damage((samples / "models" / "yolox_nano.onnx").read_bytes()))
    out = checked(tmp_path, samples, capsys,
                  f"path: {model}, labels: {samples}/models/coco_labels.txt")
    assert f"warning: cannot load model {model}: not a readable model" in out, out
    assert "run would refuse it" in out


def test_check_config_is_quiet_about_a_sound_model_with_labels(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = f"path: {samples}/models/yolox_nano.onnx, labels: {samples}/models/coco_labels.txt"
    assert "warning" not in checked(tmp_path, samples, capsys, model)


def checked(tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str], model: str,
            camera_extra: str = "") -> str:
    """check-config's output (exit 0) for one file camera and `model: {<model>}`."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: b\nmodel: {{{model}}}\ncameras:\n  - id: v\n    type: file\n"
        f"    path: {samples}/media/vtest.mp4\n{camera_extra}")
    assert main(["check-config", str(config)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("key", ["\u0665", " 5", "+5", "\u00b2", "-0", "person"])
def test_a_key_on_a_model_without_names_says_what_is_allowed(key: str) -> None:
    """The message said 'an id 0 to -1 or one of (the model has no class names)': on such
    a model any plain id resolves, and names need model.labels."""
    text = unknown_class(key, ())
    assert "0 to -1" not in text
    assert f"an id 0 to {MAX_CLASS_ID} in plain digits, or set model.labels" in text
