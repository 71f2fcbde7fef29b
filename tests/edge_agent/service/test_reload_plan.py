"""What a reload changes, as a table: one edit of the config file per row, and what the
plan says to do about it (reload the model, re-decode, restart cameras, or only note that
a section needs a restart). The end-to-end reload of a running agent is test_reload.py."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config.model import AgentConfig
from edge_agent.service.reload_plan import RESTART_ONLY, ReloadPlan, plan_reload
from engines.model_info import file_sha256, model_files

Edit = Callable[[dict[str, Any], Path], None]
NOTHING: dict[str, object] = {
    "model_changed": False, "filter_changed": False, "cameras_changed": (),
    "cameras_removed": (), "log_level_changed": False, "needs_restart_notes": (),
    "cameras_retuned": (),
}
ZONE = {"name": "bay", "points": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0]]}
LINE = {"name": "gate-line", "points": [[0.5, 0.0], [0.5, 1.0]]}


def base(model: Path) -> dict[str, Any]:
    return {
        "device_id": "box1",
        "model": {"path": model, "score_threshold": 0.35},
        "backend": {"type": "openvino", "device": "CPU"},
        "mqtt": {"host": "127.0.0.1", "topic_prefix": "site"},
        "cameras": [{"id": "gate", "type": "usb", "device": 0},
                    {"id": "yard", "type": "usb", "device": 1},
                    {"id": "spare", "type": "usb", "device": 2, "enabled": False}],
    }


def camera(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda config: next(c for c in config["cameras"] if c["id"] == name)


def set_model(key: str, value: object) -> Edit:
    return lambda config, _model: config["model"].__setitem__(key, value)


def replace_file(config: dict[str, Any], model: Path) -> None:
    """Same path, new contents: a model swapped in place."""
    model.write_bytes(model.read_bytes() + b"\0")


def other_copy(config: dict[str, Any], model: Path) -> None:
    config["model"]["path"] = shutil.copy(model, model.with_name("other.onnx"))


def unreadable(config: dict[str, Any], model: Path) -> None:
    """The file vanished: the plan does not guess; loading it will say why."""
    model.unlink()


CASES: dict[str, tuple[Edit, dict[str, object]]] = {
    "nothing": (lambda config, model: None, {}),
    "score threshold": (set_model("score_threshold", 0.6), {"filter_changed": True}),
    "class filter": (set_model("classes", ["person"]), {"filter_changed": True}),
    "max detections": (set_model("max_detections", 5), {"filter_changed": True}),
    "model path": (other_copy, {"model_changed": True}),
    "model family": (set_model("family", "yolox"), {"model_changed": True}),
    "model name": (set_model("name", "gate-model"), {"model_changed": True}),
    "model input size": (set_model("input_size", "square"), {"model_changed": True}),
    "model file replaced": (replace_file, {"model_changed": True}),
    "model file gone": (unreadable, {}),
    "backend device": (
        lambda config, model: config["backend"].__setitem__("device", "GPU"),
        {"model_changed": True},
    ),
    "camera added": (
        lambda config, model: config["cameras"].append({"id": "dock", "type": "usb"}),
        {"cameras_changed": ("dock",)},
    ),
    "camera setting": (
        lambda config, model: camera("yard")(config).__setitem__("device", 5),
        {"cameras_changed": ("yard",)},
    ),
    "detect rate": (
        lambda config, model: camera("yard")(config).__setitem__("detect", {"fps": 2}),
        {"cameras_retuned": ("yard",)},
    ),
    "motion gate and a mask": (
        lambda config, model: camera("gate")(config).update(
            detect={"motion": {"enabled": True}},
            masks=[{"name": "tv", "points": [[0, 0], [1, 0], [1, 1]]}]),
        {"cameras_retuned": ("gate",)},
    ),
    "detect rate and a camera setting": (
        lambda config, model: camera("yard")(config).update(detect={"fps": 2}, device=5),
        {"cameras_changed": ("yard",)},
    ),
    "detect rate of a disabled camera": (
        lambda config, model: camera("spare")(config).__setitem__("detect", {"fps": 2}), {},
    ),
    "camera deleted": (
        lambda config, model: config["cameras"].remove(camera("gate")(config)),
        {"cameras_removed": ("gate",)},
    ),
    "camera disabled": (
        lambda config, model: camera("gate")(config).__setitem__("enabled", False),
        {"cameras_removed": ("gate",)},
    ),
    "disabled camera enabled": (
        lambda config, model: camera("spare")(config).__setitem__("enabled", True),
        {"cameras_changed": ("spare",)},
    ),
    "disabled camera edited": (
        lambda config, model: camera("spare")(config).__setitem__("device", 7), {},
    ),
    "zone added": (  # events settings change on the running camera (no restart)
        lambda config, model: camera("yard")(config).__setitem__("zones", [ZONE]),
        {"cameras_retuned": ("yard",)},
    ),
    "line added": (
        lambda config, model: camera("gate")(config).__setitem__("lines", [LINE]),
        {"cameras_retuned": ("gate",)},
    ),
    "detections mode": (
        lambda config, model: camera("gate")(config).__setitem__(
            "publish", {"detections": "on_change"}),
        {"cameras_retuned": ("gate",)},
    ),
    "snapshots": (
        lambda config, model: camera("gate")(config).__setitem__("snapshots", {"enabled": True}),
        {"cameras_retuned": ("gate",)},
    ),
    "tracker": (
        lambda config, model: camera("gate")(config).__setitem__(
            "tracker", {"max_missed_frames": 3}),
        {"cameras_retuned": ("gate",)},
    ),
    "zone and source": (  # the source changes too: the camera restarts with both
        lambda config, model: camera("yard")(config).update(zones=[ZONE], device=4),
        {"cameras_changed": ("yard",)},
    ),
    "zone on a disabled camera": (
        lambda config, model: camera("spare")(config).__setitem__("zones", [ZONE]), {},
    ),
    "log level": (
        lambda config, model: config.__setitem__("log_level", "debug"),
        {"log_level_changed": True},
    ),
    "device id": (
        lambda config, model: config.__setitem__("device_id", "box2"),
        {"needs_restart_notes": ("device_id changed: not applied until restart",)},
    ),
    "state dir": (
        lambda config, model: config.__setitem__("state_dir", model.parent / "elsewhere"),
        {"needs_restart_notes": ("state_dir changed: not applied until restart",)},
    ),
    "broker": (
        lambda config, model: config["mqtt"].__setitem__("host", "10.0.0.2"),
        {"needs_restart_notes": ("mqtt changed: not applied until restart",)},
    ),
    "health": (
        lambda config, model: config.__setitem__("health", {"interval_s": 5}),
        {"needs_restart_notes": ("health changed: not applied until restart",)},
    ),
}


def outcome(plan: ReloadPlan) -> dict[str, object]:
    return {name: getattr(plan, name) for name in NOTHING}


@pytest.mark.parametrize(("edit", "expected"), CASES.values(), ids=CASES.keys())
def test_each_edit_changes_only_what_it_must(
    samples: Path, tmp_path: Path, edit: Edit, expected: dict[str, object]
) -> None:
    model = Path(shutil.copy(samples / "models" / "yolox_nano.onnx", tmp_path / "m.onnx"))
    running = AgentConfig.model_validate(base(model))
    running_sha256 = file_sha256(*model_files(model))
    edited = copy.deepcopy(base(model))
    edit(edited, model)
    new = AgentConfig.model_validate(edited)

    plan = plan_reload(running, new, running_sha256)

    assert outcome(plan) == {**NOTHING, **expected}
    # What runs is the new file, except the sections that wait for a restart.
    for section in RESTART_ONLY:
        assert getattr(plan.kept, section) == getattr(running, section)
    assert plan.kept.model == new.model
    assert plan.kept.cameras == new.cameras
    assert plan.kept.log_level == new.log_level
