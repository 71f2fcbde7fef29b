"""A model deploy or rollback whose model has other class names announces Home Assistant
entities for the new names at once. Before, discovery kept the old model's entities
(`..._car_count` reading occupancy["car"]) while the agent published the new names
(`automobile`): they showed 0 until the next reload or restart.

The real Agent's swap step (what edge_agent.models runs on the main loop), real OpenVINO
engines, the real announcer; the publisher is a recorder of retained config topics."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.config.model import AgentConfig
from edge_agent.homeassistant.announce import DiscoveryAnnouncer
from edge_agent.selection.loading import detection_filter, select_engine
from edge_agent.selection.probe import probe
from edge_agent.service.agent import Agent


class Recorder:
    connected = True
    disconnects = 0

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}

    def publish_retained_topic(self, topic: str, payload: bytes) -> bool:
        self.retained[topic] = payload
        return True


def config(tmp_path: Path, samples: Path, labels: Path) -> AgentConfig:
    return AgentConfig.model_validate({
        "device_id": "box1", "state_dir": str(tmp_path / "state"),
        "model": {"path": str(samples / "models" / "yolox_nano.onnx"), "labels": str(labels)},
        "homeassistant": {"enabled": True},
        "cameras": [{"id": "yard", "type": "file", "path": str(samples / "media" / "vtest.mp4"),
                     "zones": [{"name": "bay", "points": [[0, 0], [1, 0], [1, 1]],
                                "classes": [2]}]}],
    })


def test_a_model_swap_with_other_names_announces_the_new_names(
    tmp_path: Path, samples: Path
) -> None:
    coco = (samples / "models" / "coco_labels.txt").read_text().splitlines()
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("\n".join(["automobile" if n == "car" else n for n in coco]) + "\n")
    first = config(tmp_path, samples, samples / "models" / "coco_labels.txt")
    agent = Agent(first, None)
    sink = Recorder()
    agent.discovery = DiscoveryAnnouncer(sink, first.state_dir)  # type: ignore[arg-type]
    old = select_engine(first, probe())
    new = select_engine(config(tmp_path, samples, renamed), probe())
    try:
        agent._use(old, detection_filter(first.model, old.engine.info.class_names))
        agent._announce()

        def counts() -> set[str]:
            return {json.loads(p)["value_template"] for t, p in sink.retained.items()
                    if p and t.endswith("__count/config")}

        assert any('"car"' in template for template in counts())
        agent._use_model(new, detection_filter(first.model, new.engine.info.class_names))
        assert any('"automobile"' in template for template in counts()), counts()
        assert not any('"car"' in template for template in counts())
    finally:
        old.engine.close()
        new.engine.close()
