"""Config loading: real YAML files, real validation, and the messages a technician reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_agent.config.loader import check_config, load_config
from edge_agent.config.model import FileCamera, OpenVinoBackend, RtspCamera, UsbCamera
from edge_agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
device_id: box-1
model:
  path: models/yolox.onnx
  score_threshold: 0.4
mqtt:
  host: 127.0.0.1
  port: 1883
cameras:
  - id: door
    type: rtsp
    url: rtsp://10.0.0.5:554/stream
  - id: bench
    type: usb
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# (id, file text, line of the problem, fragments the message must contain)
MISTAKES = [
    (
        "typo-in-key",
        GOOD.replace("score_threshold", "scor_threshold"),
        4,
        ["model.scor_threshold: unknown key", "did you mean 'score_threshold'?",
         "allowed: path, name, family, labels, score_threshold"],
    ),
    (
        "typo-in-nested-key",
        GOOD.replace("    url:", "    urll:"),
        11,
        ["cameras[0].urll: unknown key", "did you mean 'url'?",
         # Camera sections added by other features sit between the common keys and the
         # type's own keys; only these two runs are fixed.
         "allowed: id, enabled, stall_timeout_s, ", "type, url, transport, decoder, codec, "
         "latency_ms"],
    ),
    (
        "text-for-number",
        GOOD.replace("port: 1883", 'port: "eighteen"'),
        7,
        ["mqtt.port: should be a whole number (got 'eighteen')"],
    ),
    (
        "port-out-of-range",
        GOOD.replace("port: 1883", "port: 70000"),
        7,
        ["mqtt.port: out of range (got 70000); allowed: 1 to 65535"],
    ),
    (
        "threshold-out-of-range",
        GOOD.replace("0.4", "40"),
        4,
        ["model.score_threshold: out of range (got 40); allowed: 0.0 to 1.0"],
    ),
    (
        "rtsp-without-url",
        GOOD.replace("    url: rtsp://10.0.0.5:554/stream\n", ""),
        9,
        ["cameras[0].url: required key is missing", "rtsp://host:554/path; a login goes"],
    ),
    (
        "url-not-rtsp",
        GOOD.replace("rtsp://10.0.0.5", "http://admin:hunter2@10.0.0.5"),
        11,
        ["cameras[0].url: must start with rtsp:// or rtsps://",
         "(got 'http://***@10.0.0.5:554/stream')"],
    ),
    (
        "unknown-camera-type",
        GOOD.replace("type: usb", "type: ip"),
        13,
        ["cameras[1].type: unknown type (got 'ip'); allowed: file, rtsp, usb, csi, gstreamer"],
    ),
    (
        "camera-without-type",
        GOOD.replace("    type: usb\n", ""),
        12,
        ["cameras[1]: missing 'type:' key; allowed: file, rtsp, usb, csi, gstreamer"],
    ),
    (
        "key-of-another-camera-type",
        GOOD + "    path: /tmp/x.mp4\n",
        14,
        ["cameras[1].path: unknown key ('path' belongs to type: file)"],
    ),
    (
        "bad-indentation",
        GOOD.replace("  port: 1883", "   port: 1883"),
        7,
        ["YAML syntax error", "indented"],
    ),
    (
        "dedented-key",
        GOOD.replace("  score_threshold", " score_threshold"),
        4,
        ["YAML syntax error: indentation does not line up"],
    ),
    (
        "tab-indentation",
        GOOD.replace("  port: 1883", "\tport: 1883"),
        7,
        ["YAML forbids tabs", "indent with spaces"],
    ),
    (
        "unclosed-quote",
        GOOD.replace("path: models/yolox.onnx", 'path: "models/yolox.onnx'),
        3,
        ["YAML syntax error: this quote is never closed"],
    ),
    (
        "missing-colon",
        GOOD.replace("host: 127.0.0.1", "host 127.0.0.1"),
        6,
        ["YAML syntax error: a ':' is missing"],
    ),
    (
        "number-as-key",
        GOOD + "1883: broker\n",
        14,
        ["1883: a key must be text (got 1883)"],
    ),
    (
        "duplicate-key",
        GOOD.replace("  port: 1883\n", "  port: 1883\n  host: 10.0.0.1\n"),
        8,
        ["mqtt.host: duplicate key; it is already set on line 6"],
    ),
    (
        "duplicate-section",
        GOOD + "model:\n  path: other.onnx\n",
        14,
        ["model: duplicate key; it is already set on line 2"],
    ),
    (
        "duplicate-camera-id",
        GOOD.replace("id: bench", "id: door"),
        12,
        ["cameras[1].id: camera id 'door' is already used by cameras[0]"],
    ),
    (
        "bad-camera-id",
        GOOD.replace("id: bench", "id: bench/left"),
        12,
        ["cameras[1].id: is not a valid id (got 'bench/left')", "no spaces, '/'"],
    ),
    (
        "all-cameras-disabled",
        GOOD.replace("    type: rtsp\n", "    type: rtsp\n    enabled: false\n")
        + "    enabled: false\n",
        8,
        ["cameras: every camera is disabled"],
    ),
    ("empty-file", "", 1, ["the file is empty", "model: and cameras:"]),
    ("only-comments", "# nothing yet\n", 1, ["the file is empty"]),
    ("top-level-list", "- model\n- cameras\n", 1, ["top level must be 'key: value' lines",
                                                   "(got a list)"]),
    (
        "no-cameras",
        GOOD.split("cameras:", maxsplit=1)[0] + "cameras: []\n",
        8,
        ["cameras: needs at least 1 camera"],
    ),
    (
        "cameras-missing",
        GOOD.split("cameras:", maxsplit=1)[0],
        1,
        ["cameras: required key is missing"],
    ),
    (
        "model-missing",
        GOOD.replace("model:\n  path: models/yolox.onnx\n  score_threshold: 0.4\n", ""),
        1,
        ["model: required key is missing"],
    ),
    (
        "model-path-missing",
        GOOD.replace("  path: models/yolox.onnx\n", ""),
        2,
        ["model.path: required key is missing (Model file: ONNX"],
    ),
    (
        "bad-log-level",
        "log_level: verbose\n" + GOOD,
        1,
        ["log_level: not an allowed value (got 'verbose'); allowed: debug, info, warning, error"],
    ),
    (
        "bad-qos",
        GOOD.replace("  port: 1883", "  port: 1883\n  qos: 3"),
        8,
        ["mqtt.qos: not an allowed value (got 3); allowed: 0, 1, 2"],
    ),
    (
        "unknown-backend",
        GOOD + "backend:\n  type: tensorflow\n",
        15,
        ["backend.type: unknown type (got 'tensorflow'); allowed: openvino, tensorrt, "
         "onnxruntime, auto"],
    ),
    (
        "number-where-text-goes",
        GOOD.replace("device_id: box-1", "device_id: 0042"),
        1,
        ["device_id: should be text (got 0042); put it in quotes: '0042'"],
    ),
    (
        "yes-no-for-bool",
        GOOD + "    enabled: maybe\n",
        14,
        ["cameras[1].enabled: should be true or false (got 'maybe')"],
    ),
    (
        "unset-env-var",
        GOOD.replace(
            "  port: 1883", "  port: 1883\n  username: u\n  password: ${EDGE_AGENT_TEST_UNSET}"
        ),
        9,
        ["mqtt.password: environment variable EDGE_AGENT_TEST_UNSET is not set"],
    ),
    (
        "section-as-text",
        GOOD.replace("mqtt:\n  host: 127.0.0.1\n  port: 1883\n", "mqtt: 127.0.0.1\n"),
        5,
        ["mqtt: should be a section of 'key: value' lines (got '127.0.0.1')"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [case[1:] for case in MISTAKES],
    ids=[case[0] for case in MISTAKES],
)
def test_technician_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, fragments: list[str]
) -> None:
    monkeypatch.delenv("EDGE_AGENT_TEST_UNSET", raising=False)
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1, problems
    message = problems[0]
    assert message.startswith(f"{path}:{line}:"), message
    for fragment in fragments:
        assert fragment in message, message
    for jargon in ("pydantic", "union_tag", "extra_forbidden", "Input should", "rtsp.url",
                   "Value error", "[type="):
        assert jargon not in message, message


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    text = GOOD.replace("score_threshold", "scor_threshold").replace("1883", "70000")
    text = text.replace("type: usb", "type: ip").replace("device_id: box-1", "device_id: box 1")
    path = write(tmp_path, "log_level: loud\n" + text)
    problems = problems_of(path)
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:1", f"{path}:2", f"{path}:5", f"{path}:8", f"{path}:14",
    ]
    assert [p.split(": ")[1] for p in problems] == [
        "log_level", "device_id", "model.scor_threshold", "mqtt.port", "cameras[1].type",
    ]


def test_typo_of_required_key_is_one_problem_not_two(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, GOOD.replace("  path:", "  pth:")))
    assert len(problems) == 1
    assert "model.pth: unknown key (did you mean 'path'?)" in problems[0]


def test_either_type_union_reads_as_one_problem(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, GOOD + "    device: [0, 1]\n"))
    assert problems == [
        f"{tmp_path / 'agent.yaml'}:14: cameras[1].device: should be a whole number or text "
        "(got a list)"
    ]


def test_password_values_are_never_echoed(tmp_path: Path) -> None:
    text = GOOD.replace("  port: 1883", "  port: 1883\n  password: [s3cret]")
    problems = problems_of(write(tmp_path, text))
    assert "mqtt.password: should be text (got a hidden value)" in problems[0]
    assert "s3cret" not in problems[0]


@pytest.mark.parametrize("value", ["98765432", "yes", "0042", "1e3", "off"])
def test_a_password_read_as_a_number_or_flag_is_not_quoted_back(
    tmp_path: Path, value: str
) -> None:
    """The 'put it in quotes' and 'YAML 1.1 reads' hints quoted the value as typed: a
    numeric password went to the error, last-reload.json and the retained info."""
    text = GOOD.replace("  port: 1883", f"  port: 1883\n  password: {value}")
    problems = problems_of(write(tmp_path, text))
    assert "mqtt.password: should be text (got a hidden value); put it in quotes" in problems[0]
    assert value not in problems[0].split("agent.yaml")[1]


@pytest.mark.parametrize("value", ["*Zq9Secret", "!Zq9Secret", "!!Zq9Secret", "!Zq9Secret x"])
def test_a_password_yaml_reads_as_an_alias_or_tag_is_not_quoted_back(
    tmp_path: Path, value: str
) -> None:
    """YAML's own message quotes the token (`found undefined alias 'Zq9Secret'`, `the tag
    !Zq9Secret ...`): on a password line that token is the password."""
    text = GOOD.replace("  port: 1883", f"  port: 1883\n  password: {value}")
    problems = problems_of(write(tmp_path, text))
    assert "YAML" in problems[0], problems
    assert "Zq9Secret" not in "\n".join(problems)


@pytest.mark.parametrize("url", [
    "admin:Zq9secret@192.168.1.10:554/stream1", "rstp://admin:Zq9secret@10.0.0.5/s",
    "http://admin:Zq9secret@10.0.0.5/s", "admin:Zq9secret@[fe80::1]:554/s",
])
def test_a_camera_url_refused_for_its_scheme_never_shows_its_password(
    tmp_path: Path, url: str
) -> None:
    text = GOOD + f"  - id: cam9\n    type: rtsp\n    url: '{url}'\n"
    problems = problems_of(write(tmp_path, text))
    shown = [p for p in problems if "cameras[2].url" in p]
    assert shown, problems
    assert "Zq9secret" not in "\n".join(problems)
    assert "***@" in shown[0]


def test_environment_variables_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_AGENT_TEST_PASSWORD", "pa$$word")
    monkeypatch.setenv("EDGE_AGENT_TEST_PORT", "8883")
    text = GOOD.replace(
        "  port: 1883",
        "  port: ${EDGE_AGENT_TEST_PORT}\n  username: box\n  password: ${EDGE_AGENT_TEST_PASSWORD}",
    ).replace("rtsp://10.0.0.5", "rtsp://view:${EDGE_AGENT_TEST_PASSWORD}@10.0.0.5")
    config = load_config(write(tmp_path, text))
    assert config.mqtt.password == "pa$$word"  # noqa: S105 (a test value, not a secret)
    assert config.mqtt.port == 8883
    camera = config.cameras[0]
    assert isinstance(camera, RtspCamera)
    assert camera.url == "rtsp://view:pa$$word@10.0.0.5:554/stream"


def test_double_dollar_keeps_a_literal_reference(tmp_path: Path) -> None:
    login = "  port: 1883\n  username: u\n  password: $${NOT_A_VARIABLE}"
    text = GOOD.replace("  port: 1883", login)
    password = load_config(write(tmp_path, text)).mqtt.password
    assert password == "${NOT_A_VARIABLE}"  # noqa: S105 (a test value, not a secret)


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        (lambda p: p / "missing.yaml", "missing.yaml: cannot read the config file: No such file"),
        (lambda p: p, r"cannot read the config file: not a regular file \(a directory\)"),
    ],
    ids=["missing-file", "directory"],
)
def test_unreadable_file(tmp_path: Path, reader, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(reader(tmp_path))


def test_control_character(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("box-1", "box-1\x00"))
    with pytest.raises(ConfigError, match=r"agent\.yaml:1: the file contains a control character"):
        load_config(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"device_id: box\nmodel:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml:3: the file is not UTF-8 text"):
        load_config(path)


def test_relative_paths_resolve_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    text = GOOD.replace("  score_threshold: 0.4", "  labels: ../shared/labels.txt") + (
        "  - id: clip\n    type: file\n    path: media/clip.mp4\n"
        "state_dir: state\n"
        "backend:\n  type: openvino\n  cache_dir: cache\n"
    )
    text = text.replace("  port: 1883", "  port: 1883\n  tls:\n    ca_file: tls/ca.pem")
    (folder / "tls").mkdir()
    (folder / "tls" / "ca.pem").write_text("a CA bundle\n")
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    config = load_config(write(folder, text))
    assert config.model.path == folder / "models" / "yolox.onnx"
    assert config.model.labels == tmp_path / "shared" / "labels.txt"
    assert config.state_dir == folder / "state"
    assert isinstance(config.backend, OpenVinoBackend)
    assert config.backend.cache_dir == folder / "cache"
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file == folder / "tls" / "ca.pem"
    clip = config.cameras[2]
    assert isinstance(clip, FileCamera)
    assert clip.path == folder / "media" / "clip.mp4"


def test_reference_config_loads() -> None:
    config = load_config(REPO / "configs" / "agent.yaml")
    assert [(cam.id, cam.type) for cam in config.cameras] == [
        ("dock-door", "rtsp"), ("bench", "usb")
    ]
    assert isinstance(config.cameras[1], UsbCamera)
    assert config.mqtt.host == "127.0.0.1"
    assert config.model.path.is_absolute()


def test_demo_config_loads_with_paths_beside_the_repo() -> None:
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.device_id == "demo"
    assert config.model.path == REPO / "samples" / "models" / "yolox_nano.onnx"
    assert config.model.labels == REPO / "samples" / "models" / "coco_labels.txt"
    assert config.state_dir == REPO / ".state"
    camera = config.cameras[0]
    assert isinstance(camera, FileCamera)
    assert camera.path == REPO / "samples" / "media" / "vtest.mp4"
    assert camera.loop
    assert camera.realtime
    assert isinstance(config.backend, OpenVinoBackend)
    assert config.backend.device == "CPU"
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix) == (
        "127.0.0.1", 1883, "edge-agent"
    )


def test_check_config_summarises_a_good_file(tmp_path: Path) -> None:
    result = check_config(write(tmp_path, GOOD))
    assert result.ok
    assert "device:  box-1" in result.text
    assert "cameras: 2 (door: rtsp, bench: usb)" in result.text
    assert "warning: model file" in result.text  # the model is not there yet


def test_check_config_lists_problems_and_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path, "log_level: loud\n" + GOOD.replace("1883", "0"))
    ok, text = check_config(path)
    assert not ok
    lines = text.splitlines()
    assert lines[0].startswith(f"{path}:1: log_level")
    assert lines[1].startswith(f"{path}:8: mqtt.port")
    assert lines[-1] == f"{path}: 2 problems"
