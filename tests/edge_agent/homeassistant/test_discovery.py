"""Home Assistant discovery configs against Home Assistant's documented keys.

KEYS below is the table of allowed keys per platform, copied from Home Assistant's
documentation (home-assistant/home-assistant.io, source/_integrations/):
sensor.mqtt.markdown ("MQTT Sensor"), binary_sensor.mqtt.markdown ("MQTT Binary sensor"),
image.mqtt.markdown ("MQTT Image"), and for `origin` the MQTT integration's discovery
section (mqtt.markdown, "Discovery messages": origin name / sw_version / support_url;
home-assistant/core#98782). `platform` is left out on purpose: it is only allowed in
device-based discovery payloads, and these are per-entity configs. Every payload the agent
publishes is checked against it: an unknown key, a missing required key, a bad value of an
enumerated key, or a value_template that does not render against a real payload fails.
"""

from __future__ import annotations

import json
import random
import re
import signal
import string
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.delivery.payloads import counts_payload, occupancy_payload
from edge_agent.errors import ConfigError
from edge_agent.homeassistant.discovery import (
    DeviceInfo,
    counts_template,
    discovery_configs,
    occupancy_template,
    occupied_template,
    slug,
)
from tests.helpers import (
    IR_LABELS,
    REPO,
    Broker,
    first_frames,
    start_agent,
    stop_agent,
    write_config,
)

try:  # Home Assistant renders templates with Jinja2's ImmutableSandboxedEnvironment
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
except ImportError:  # pragma: no cover - jinja2 is in the test extra
    JINJA = None

_AVAILABILITY = {"availability", "availability_mode", "availability_template",
                 "availability_topic", "payload_available", "payload_not_available"}
_ENTITY = {"device", "enabled_by_default", "encoding", "entity_category", "icon",
           "json_attributes_template", "json_attributes_topic", "name", "object_id",
           "unique_id", "origin"}
KEYS: dict[str, dict[str, set[str]]] = {
    # platform: allowed keys, required keys (Configuration Variables of each page)
    "sensor": {
        "allowed": _AVAILABILITY | _ENTITY | {
            "device_class", "entity_picture", "expire_after", "force_update",
            "last_reset_value_template", "options", "qos", "state_class", "state_topic",
            "suggested_display_precision", "unit_of_measurement", "value_template"},
        "required": {"state_topic"},
    },
    "binary_sensor": {
        "allowed": _AVAILABILITY | _ENTITY | {
            "device_class", "expire_after", "force_update", "off_delay", "payload_off",
            "payload_on", "qos", "state_topic", "value_template"},
        "required": {"state_topic"},
    },
    "image": {
        "allowed": _AVAILABILITY | _ENTITY | {
            "content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
        "required": set(),  # exactly one of image_topic / url_topic: checked below
    },
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers",
               "manufacturer", "model", "model_id", "name", "serial_number",
               "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
TOPIC = re.compile(r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/"
                   r"(?P<object>[A-Za-z0-9_-]+)/config$")
TEMPLATE_FORMS = [  # without Jinja2: the exact forms the agent writes, nothing else
    r'\{\{ value_json\.total \}\}',
    r'\{\{ value_json\.occupancy\["[^"\\]+"\] \| default\(0\) \}\}',
    r"\{\{ 'ON' if value_json\.total > 0 else 'OFF' \}\}",
    r"\{\{ 'ON' if \(value_json\.occupancy\[\"[^\"\\]+\"\] \| default\(0\)\) > 0 "
    r"else 'OFF' \}\}",
    r'\{\{ \(value_json\.counts\["[^"\\]+"\] \| default\(\{\}\)\)\.values\(\) \| sum \}\}',
    r'\{\{ \(value_json\.counts\["[^"\\]+"\] \| default\(\{\}\)\)\["[^"\\]+"\] '
    r'\| default\(0\) \}\}',
]


def render(template: str, payload: bytes) -> str:
    """The state Home Assistant would get from `payload` (value and value_json set)."""
    if JINJA is None:
        assert any(re.fullmatch(form, template) for form in TEMPLATE_FORMS), template
        return "?"
    text = payload.decode()
    return JINJA.from_string(template).render(value=text, value_json=json.loads(text))


def validate(topic: str, payload: bytes, states: Mapping[str, bytes] | None = None) -> dict:
    """Check one discovery message; `states` maps state topics to real payloads whose
    rendering must give a number (sensor) or ON/OFF (binary_sensor)."""
    match = TOPIC.match(topic)
    assert match, f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"
    component = match["component"]
    assert component in KEYS, topic
    body = json.loads(payload)
    keys = set(body)
    allowed = KEYS[component]["allowed"]
    assert keys <= allowed, f"{topic}: keys Home Assistant does not know: {keys - allowed}"
    assert KEYS[component]["required"] <= keys, topic
    assert "unique_id" in body
    assert "device" in body
    assert set(body["device"]) <= DEVICE_KEYS
    assert body["device"].get("identifiers")
    assert set(body["origin"]) <= ORIGIN_KEYS
    assert body["origin"]["name"]
    assert not ({"availability", "availability_topic"} <= keys)  # the docs: not both
    if "state_class" in body:
        assert body["state_class"] in STATE_CLASSES
    if component == "image":
        assert ("image_topic" in body) != ("url_topic" in body), topic
        assert body.get("content_type") == "image/jpeg"
    if states is not None and "value_template" in body:
        state = render(body["value_template"], states[body["state_topic"]])
        if component == "sensor":
            assert state == "?" or re.fullmatch(r"\d+", state), (topic, state)
        else:
            assert state in ("?", body["payload_on"], body["payload_off"]), (topic, state)
    return body


CONFIG = """\
device_id: box.1
state_dir: {tmp}/state
model:
  path: {samples}/models/yolox_nano.onnx
  labels: {samples}/models/coco_labels.txt
homeassistant:
{homeassistant}
cameras:
  - id: yard
    type: file
    path: {samples}/media/vtest.mp4
    zones:
      - {{name: bay, points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], classes: [person, 2]}}
      - {{name: lot_a, points: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
    lines:
      - {{name: gate, points: [[0.5, 0], [0.5, 1]], directions: {{forward: in, backward: out}}}}
    snapshots: {{enabled: true}}
  - id: off-cam
    type: file
    enabled: false
    path: {samples}/media/vtest.mp4
    zones:
      - {{name: bay, points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
"""
LABELS = ("person", "bicycle", "car")
DEVICE = DeviceInfo(device_id="box.1", hardware="openvino/CPU")


def configs_for(tmp_path: Path, samples: Path, homeassistant: str) -> dict[str, bytes]:
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path, samples=samples, homeassistant=homeassistant))
    return discovery_configs(load_config(path), LABELS, DEVICE)


def real_states(configs: Mapping[str, bytes], occupancy: dict[str, int],
                counts: dict[str, dict[str, int]]) -> dict[str, bytes]:
    """The payloads edge_agent.delivery publishes on each state topic the configs read."""
    states = {}
    for payload in configs.values():
        topic = json.loads(payload).get("state_topic")
        if topic and topic.endswith("/occupancy"):
            states[topic] = occupancy_payload(camera_id="yard", zone="z", occupancy=occupancy,
                                              at=1e9)
        elif topic:
            states[topic] = counts_payload(camera_id="yard", line="gate", counts=counts,
                                           since=1e9, at=1e9)
    return states


@pytest.mark.parametrize(("classes", "expected"), [
    # zone bay [person, car] x (count, occupied) + lot_a per class x 2 + line 2 dirs x
    # classes + images: bay's classes and, lot_a and gate being unfiltered, `classes`
    ("[person, car]", {"sensor": 2 + 2 + 4, "binary_sensor": 2 + 2, "image": 2}),
    ("[]", {"sensor": 2 + 1 + 2, "binary_sensor": 2 + 1, "image": 2}),
    ("[truck]", {"sensor": 2 + 1 + 2, "binary_sensor": 2 + 1, "image": 3}),
])
def test_every_entity_follows_home_assistants_keys(
    tmp_path: Path, samples: Path, classes: str, expected: dict[str, int]
) -> None:
    configs = configs_for(tmp_path, samples, f"  enabled: true\n  classes: {classes}")
    kinds: dict[str, int] = {}
    for occupancy, counts in [({}, {}), ({"person": 2, "car": 1},
                                         {"in": {"person": 3}, "out": {"car": 1}})]:
        states = real_states(configs, occupancy, counts)
        for topic, payload in configs.items():
            validate(topic, payload, states)
    for topic in configs:
        component = TOPIC.match(topic)["component"]  # type: ignore[index]
        kinds[component] = kinds.get(component, 0) + 1
    assert kinds == expected
    bodies = [json.loads(p) for p in configs.values()]
    assert len({b["unique_id"] for b in bodies}) == len(bodies)
    assert all(b["availability_topic"] == "edge-agent/box.1/status" for b in bodies)
    assert all("off-cam" not in t for t in configs)  # disabled cameras get no entities
    assert all(t.startswith("homeassistant/") and "/box_2e1/" in t for t in configs)


@pytest.mark.parametrize(("where", "key"), [
    *[("zone", key) for key in ("traffic light", "traffic_light", "3", 3)],
    *[("homeassistant.classes", key) for key in ("traffic light", "traffic_light", "3", 3)],
])
def test_entities_count_the_label_the_agent_publishes(
    tmp_path: Path, samples: Path, key: str | int, where: str
) -> None:
    """A class written as the detect and zone filters accept it (a spaced name for an IR's
    underscored label, an id, an id as text) gets an entity whose template reads the label
    the running agent publishes, not the text as written (it would show 0 forever)."""
    if JINJA is None:
        pytest.skip("jinja2 is not installed")
    written = json.dumps(key)
    path = tmp_path / "agent.yaml"
    text = CONFIG.format(tmp=tmp_path, samples=samples, homeassistant=(
        f"  enabled: true\n  classes: [{written}]" if where != "zone" else "  enabled: true"))
    if where == "zone":
        text = text.replace("classes: [person, 2]", f"classes: [{written}]")
    path.write_text(text)
    configs = discovery_configs(load_config(path), IR_LABELS, DEVICE)
    zone = "bay" if where == "zone" else "lot_a"
    payload = occupancy_payload(camera_id="yard", zone=zone,
                                occupancy={"traffic_light": 4, "person": 1}, at=1e9)
    counts = [render(json.loads(body)["value_template"], payload)
              for topic, body in configs.items()
              if f"/{slug('zone', 'yard', zone)}__" in topic and topic.endswith("__count/config")]
    assert counts == ["4"], list(configs)


def test_templates_give_the_counts_of_real_payloads() -> None:
    if JINJA is None:
        pytest.skip("jinja2 is not installed: the template forms are checked instead")
    occupancy = occupancy_payload(camera_id="c", zone="z", occupancy={"person": 2, "car": 1},
                                  at=1e9)
    empty = occupancy_payload(camera_id="c", zone="z", occupancy={}, at=1e9)
    counts = counts_payload(camera_id="c", line="l", since=1e9, at=1e9,
                            counts={"in": {"person": 3, "car": 2}, "out": {}})
    cases = [
        (occupancy_template("person"), occupancy, "2"),
        (occupancy_template("truck"), occupancy, "0"),
        (occupancy_template(None), occupancy, "3"),
        (occupancy_template("person"), empty, "0"),
        (occupied_template("car"), occupancy, "ON"),
        (occupied_template("truck"), occupancy, "OFF"),
        (occupied_template(None), empty, "OFF"),
        (occupied_template(None), occupancy, "ON"),
        (counts_template("in", "person"), counts, "3"),
        (counts_template("in", None), counts, "5"),
        (counts_template("out", "person"), counts, "0"),
        (counts_template("out", None), counts, "0"),
        (counts_template("sideways", "car"), counts, "0"),
        (occupancy_template('traffic "light"'),
         occupancy_payload(camera_id="c", zone="z", occupancy={'traffic "light"': 4}, at=1),
         "4"),
    ]
    for template, payload, expected in cases:
        assert render(template, payload) == expected, template


def test_slugs_are_valid_and_never_collide() -> None:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "-_. é/"
    seen: dict[str, tuple[str, ...]] = {}
    for _ in range(5000):
        parts = tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
                      for _ in range(rng.randint(1, 4)))
        made = slug(*parts)
        assert re.fullmatch(r"[A-Za-z0-9_-]*", made)
        assert seen.setdefault(made, parts) == parts, (made, parts, seen[made])
    assert slug("loading-bay") == "loading-bay"
    assert slug("a.b", "c") != slug("a", "b.c") != slug("a_b", "c")


def test_disabled_means_no_entities(tmp_path: Path, samples: Path) -> None:
    assert configs_for(tmp_path, samples, "  enabled: false\n  classes: [person]") == {}


@pytest.mark.parametrize(("section", "problem"), [
    ("  enabled: true\n  classes: [person, 'a/b']", "homeassistant.classes[1]"),
    ("  enabled: true\n  classes: [person, person]", "homeassistant.classes[1]"),
    ("  enabled: true\n  classes: [person, -1]", "homeassistant.classes[1]"),
    ("  enabled: true\n  classes: [2, 2]", "homeassistant.classes[1]"),
    ("  enabled: true\n  discovery_prefix: 'ha/#'", "homeassistant.discovery_prefix"),
    ("  enabled: true\n  discovery: homeassistant", "homeassistant.discovery"),
])
def test_bad_settings_name_the_line(
    tmp_path: Path, samples: Path, section: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        configs_for(tmp_path, samples, section)
    assert f"agent.yaml:{7 + section.count(chr(10))}: {problem}" in str(caught.value)


# -- the real agent and broker ---------------------------------------------------------

AGENT_CAMERA = """\
  - id: yard
    type: file
    path: {video}
    loop: true
    zones:
      - {{name: bay, points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], classes: [person]}}
{extra_zone}    lines:
      - {{name: gate, points: [[0.5, 0], [0.5, 1]], directions: {{forward: in, backward: out}},
         classes: [person, car]}}
    snapshots: {{enabled: true}}
homeassistant:
  enabled: {enabled}
  discovery_prefix: {discovery}
  device_name: {device_name}
"""
LOT = "      - {name: lot, points: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]], classes: [car]}\n"


def retained_now(subscribe, topic_filter: str, settle: float = 1.5) -> dict[str, bytes]:
    """What a new subscriber (Home Assistant starting) gets: the retained messages."""
    collector = subscribe(topic_filter)
    time.sleep(settle)
    return {m.topic: m.payload for m in collector.messages if m.retain}


@pytest.mark.slow
def test_agent_announces_updates_and_removes_entities(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    video = first_frames(samples, tmp_path / "clip.mp4", 40)
    discovery = f"ha-{unique_prefix}"

    def configure(extra_zone: str, enabled: str, device_name: str = "Yard box") -> Path:
        return write_config(tmp_path, samples, broker, unique_prefix, AGENT_CAMERA.format(
            video=video, extra_zone=extra_zone, enabled=enabled, discovery=discovery,
            device_name=device_name))

    config = configure(LOT, "true")
    configs = subscribe(f"{discovery}/#")
    states = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        # bay: person x 2, lot: car x 2, gate: 2 directions x 2 classes, images person, car
        configs.wait_for("/config", count=10, timeout=60)
        states.wait_for("/yard/zones/lot/occupancy", timeout=30)
        states.wait_for("/yard/zones/bay/occupancy", timeout=30)
        states.wait_for("/yard/lines/gate/counts", timeout=30)
        announced = {m.topic: m.payload for m in configs.messages}
        assert len(announced) == 10
        real = {m.topic: m.payload for m in states.messages}  # the newest of each
        for topic, payload in announced.items():
            body = validate(topic, payload, real)
            assert body["availability_topic"] == f"{unique_prefix}/box1/status"
        assert real[f"{unique_prefix}/box1/status"] == b"online"
        lot = {t for t in announced if "__lot__" in t}
        assert len(lot) == 2

        assert all(json.loads(p)["device"]["name"] == "Yard box" for p in announced.values())
        configure("", "true", "Gate box")  # the zone `lot` goes, the device is renamed
        agent.send_signal(signal.SIGHUP)
        after = configs.wait_for("/config", count=10 + 2 + 8, timeout=30)[10:]
        assert {m.topic for m in after if m.payload == b""} == lot
        renamed = {m.topic: json.loads(m.payload) for m in after if m.payload}
        assert set(renamed) == set(announced) - lot
        for topic, body in renamed.items():
            assert validate(topic, json.dumps(body).encode())["device"]["name"] == "Gate box"
        reload = json.loads((tmp_path / "state" / "last-reload.json").read_text())
        assert "homeassistant (enabled: True)" in reload["applied"]
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    left = retained_now(subscribe, f"{discovery}/#")
    assert set(left) == set(announced) - lot
    state_file = tmp_path / "state" / "homeassistant.json"
    assert set(json.loads(state_file.read_text())["topics"]) == set(left)

    configure("", "false", "Gate box")  # a restart with Home Assistant off removes every entity
    agent = start_agent(config, log)
    try:
        configs.wait_for("/config", count=20 + len(left), timeout=60)
        assert not retained_now(subscribe, f"{discovery}/#")
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    assert not state_file.exists()


def test_agent_yaml_example_announces_valid_entities(tmp_path: Path) -> None:
    """configs/agent.yaml's commented homeassistant and events blocks, uncommented, give
    the entities docs/homeassistant.md describes, each valid for Home Assistant."""
    lines = (REPO / "configs" / "agent.yaml").read_text().splitlines()
    for marker, indent in (("# homeassistant:", ""), ("    # zones:", "    ")):
        start = lines.index(marker)
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith(marker[:-len(
            marker.lstrip())] + "#"))
        lines[start:end] = [line.replace(f"{indent}# ", indent, 1) for line in lines[start:end]]
    text = "\n".join(lines).replace("enabled: false       # true", "enabled: true        # true")
    path = tmp_path / "agent.yaml"
    path.write_text(text.replace("../samples", str(REPO / "samples")))
    config = load_config(path)
    assert config.homeassistant.enabled
    configs = discovery_configs(config, LABELS, DEVICE)
    for topic, payload in configs.items():
        validate(topic, payload)
    dock = sorted(t.split("/")[3] for t in configs if "dock-door" in t)
    assert dock == sorted([
        "zone__dock-door__loading-bay__person__count",
        "zone__dock-door__loading-bay__person__occupied",
        *(f"line__dock-door__door-line__{d}__{c}__count"
          for d in ("in", "out") for c in ("person", "car")),
        "snapshot__dock-door__person", "snapshot__dock-door__car",
    ])


def test_the_example_in_the_docs_is_what_the_agent_sends(tmp_path: Path, samples: Path) -> None:
    text = (REPO / "docs" / "homeassistant.md").read_text()
    topic = "homeassistant/sensor/box1/zone__yard__bay__person__count/config"
    shown = json.loads(text.split(f"{topic}\n```\n```json\n", 1)[1].split("```", 1)[0])
    path = tmp_path / "agent.yaml"
    path.write_text(f"""\
device_id: box1
model: {{path: {samples}/models/yolox_nano.onnx}}
homeassistant: {{enabled: true}}
cameras:
  - id: yard
    type: file
    path: {samples}/media/vtest.mp4
    zones: [{{name: bay, points: [[0, 0], [1, 0], [1, 1]], classes: [person]}}]
""")
    sent = discovery_configs(load_config(path), LABELS,
                             DeviceInfo(device_id="box1", hardware="openvino/CPU", version="0.1.0"))
    assert json.loads(sent[topic]) == shown
