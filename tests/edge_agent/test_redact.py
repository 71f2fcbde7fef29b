"""Secrets never leave the box: one redaction for URLs and error texts, tried over many
URL forms and secret placements, in the log filter, and end to end in a real agent."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.redact import (
    RedactFilter,
    pipeline_secrets,
    redact,
    redact_url,
    register_secret,
    url_secrets,
)
from edge_agent.service.logs import setup_logging
from tests.helpers import Broker, free_port, start_agent, stop_agent

# (url, what must be gone, what must stay)
URLS = [
    ("rtsp://admin:hunter2@10.0.0.5:554/s", ["hunter2", "admin"], ["10.0.0.5:554/s"]),
    ("rtsp://admin:p@ss/word@10.0.0.5/s", ["p@ss", "ss/word"], ["@10.0.0.5/s"]),
    ("rtsp://admin:a:b:c@10.0.0.5/s", ["a:b:c"], ["10.0.0.5/s"]),
    ("rtsp://admin:p@ss@word@10.0.0.5:8554/live", ["p@ss", "word@"], ["10.0.0.5:8554/live"]),
    ("rtsp://user@10.0.0.5/s", ["user@"], ["10.0.0.5/s"]),
    ("rtsp://:onlypass@10.0.0.5/s", ["onlypass"], ["10.0.0.5/s"]),
    ("rtsp://admin:pw@[fe80::1%eth0]:554/s", ["admin:pw"], ["[fe80::1%eth0]:554/s"]),
    ("rtsp://10.0.0.5/s?user=a&password=s3cret", ["s3cret"], ["user=a", "password=***"]),
    ("rtsp://10.0.0.5/s?PASSWORD=S3cret&x=1", ["S3cret"], ["x=1"]),
    ("rtsp://10.0.0.5/s?passwd=s3cret", ["s3cret"], []),
    # '#' does not end a secret value: most often it is an unescaped part of the password.
    ("rtsp://10.0.0.5/s?pwd=s3cret#frag", ["s3cret"], ["pwd=***"]),
    ("rtsp://10.0.0.5/s?pass=s3cret", ["s3cret"], []),
    ("rtsp://10.0.0.5/s?token=abc123&channel=1", ["abc123"], ["channel=1"]),
    ("rtsp://10.0.0.5/s?access_token=abc123", ["abc123"], []),
    ("rtsp://10.0.0.5/s?apikey=abc123", ["abc123"], []),
    ("rtsp://10.0.0.5/s?api_key=abc123", ["abc123"], []),
    ("rtsp://10.0.0.5/s?client_secret=abc123", ["abc123"], []),
    ("rtsp://10.0.0.5/s?auth=abc123", ["abc123"], []),
    ("https://h/x?X-Amz-Signature=abc123&X-Amz-Date=1", ["abc123"], ["X-Amz-Date=1"]),
    ("rtsp://10.0.0.5/s;password=s3cret;user=a", ["s3cret"], [";user=a"]),
    ("rtsp://10.0.0.5/s?password=p@ss/w:rd&x=1", ["p@ss", "w:rd"], []),
    ("rtsp://a:b@10.0.0.5/s?password=s3cret", ["a:b", "s3cret"], ["10.0.0.5/s"]),
    ("rtsps://admin:hunter2@cam.local/s", ["hunter2"], ["cam.local/s"]),
    ("http://admin:hunter2@cam.local:8080/video.mjpg", ["hunter2"], ["cam.local:8080"]),
    ("rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0", [],
     ["rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0"]),
    # The reviewers' examples (issue 9, section 6, second round).
    ("rtsp://a:x@h:1/cam?pass%77ord=SECRETFx", ["SECRETFx", "a:x"], ["h:1/cam?pass%77ord=***"]),
    ("rtsp://h:1/cam?Passwd=y#frag=SECRET7x", ["SECRET7x", "=y"], ["h:1/cam?Passwd=***"]),
    ("rtsp://h:1/user=admin_password=SECRETAx_channel=1_stream=0.sdp", ["SECRETAx"],
     ["/user=admin_password=***_channel=1_stream=0.sdp"]),
    ("rtsp://h:1/cam?p=SECRETBx&u=admin", ["SECRETBx"], ["?p=***&u=admin"]),
    ("rtsp://h:1/cam#token=SECRETCx&x=1", ["SECRETCx"], ["#token=***&x=1"]),
    ("rtsp://h:1/cam?username=admin&pw=SECRETDx", ["SECRETDx"], ["username=admin"]),
    ("rtsp://h:1/cam?%70%61%73%73=SECRETEx", ["SECRETEx"], ["h:1/cam"]),
    ("rtsp://h:1/s?api_key=my_secret_pw&x=1", ["my_secret_pw", "secret_pw"], ["&x=1"]),
    ("rtsp://h:1/user=admin_p=SECRETGx_channel=1", ["SECRETGx"], ["user=admin", "_channel=1"]),
    ("rtsp://h:1/s?auth[token]=SECRETHx&x=1", ["SECRETHx"], ["auth[token]=***&x=1"]),
    ("rtsp://h:1/s?a=1&pass%2577ord=SECRETIx", ["SECRETIx"], ["a=1&"]),
]

SECRET_NAMES = sorted([
    "p", "pw", "pass", "pwd", "passwd", "password", "token", "key", "secret", "auth", "sig",
    "signature", "apikey", "api_key", "access_token", "credential", "credentials",
    "Password", "PASSWD", "X-Amz-Signature", "client_secret",
])
VISIBLE_NAMES = ["u", "user", "username", "channel", "subtype", "stream"]


def _encodings(name: str) -> list[str]:
    """The name as written, upper-cased, with one and with every character percent-escaped."""
    first = f"%{ord(name[0]):02x}" + name[1:]
    every = "".join(f"%{ord(c):02X}" for c in name)
    return sorted({name, name.upper(), first, every})


# (prefix before the pair, suffix after it): every separator a camera URL uses.
PLACES = [
    ("rtsp://h:554/s?", "&channel=1"),
    ("rtsp://h:554/s?channel=1&", ""),
    ("rtsp://h:554/s;", ";channel=1"),
    ("rtsp://h:554/s/", "/channel=1"),
    ("rtsp://h:554/s#", "&channel=1"),
    ("rtsp://h:554/s?a=1#", ""),
    ("rtsp://h:554/user=admin_", "_channel=1_stream=0.sdp"),
    ("rtsp://cam:pw@h:554/user=admin_", "_channel=1_stream=0.sdp"),
]
GENERATED = [
    (f"{before}{encoded}=Zq{index}vW9{after}", name, after)
    for index, name in enumerate(SECRET_NAMES)
    for encoded in _encodings(name)
    for before, after in PLACES
]


@pytest.mark.parametrize(("url", "name", "after"), GENERATED, ids=[g[0] for g in GENERATED])
def test_every_secret_name_separator_and_encoding_is_masked(
    url: str, name: str, after: str
) -> None:
    """Names x separators x percent-encodings: the value goes, the rest of the URL stays."""
    for text in (url, f"camera door: cannot open {url} (401)"):
        shown = redact(text)
        assert "vW9" not in shown, shown
        assert after in shown, shown
        assert redact(shown) == shown


@pytest.mark.parametrize("name", VISIBLE_NAMES)
@pytest.mark.parametrize(("before", "after"), PLACES)
def test_user_names_and_ordinary_parameters_stay_visible(
    name: str, before: str, after: str
) -> None:
    url = f"{before}{name}=admin42{after}"
    assert f"{name}=admin42" in redact(url), redact(url)


@pytest.mark.parametrize(("url", "gone", "kept"), URLS, ids=[u[0] for u in URLS])
def test_redact_url_masks_every_placement(url: str, gone: list[str], kept: list[str]) -> None:
    shown = redact_url(url)
    for secret in gone:
        assert secret not in shown, shown
    for part in kept:
        assert part in shown, shown
    assert redact(url) == shown
    assert redact_url(shown) == shown  # idempotent: a second pass changes nothing


# Texts as FFmpeg, OpenCV, GStreamer and our own errors word them.
WRAPPERS = [
    "{url}",
    "camera door: cannot open RTSP stream {url}",
    "[rtsp @ 0x55d5c3a4c0] method DESCRIBE failed: 401 Unauthorized ({url})",
    "OpenCV(4.9.0) cap_ffmpeg_impl.hpp:1072: error: could not open '{url}'",
    'gst-resource-error-quark: Could not open resource for reading. "{url}"',
    "rtspsrc location=\"{url}\" protocols=tcp ! rtph264depay",
    "two cameras: {url} and {url}",
    "url={url}",
    "<{url}>",
]


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize(("url", "gone", "kept"), URLS[:12], ids=[u[0] for u in URLS[:12]])
def test_redact_finds_urls_inside_longer_texts(
    wrapper: str, url: str, gone: list[str], kept: list[str]
) -> None:
    shown = redact(wrapper.format(url=url))
    for secret in gone:
        assert secret not in shown, shown


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("login failed: password=hunter2, retrying", "hunter2"),
        ("Authorization token=abc.def.ghi rejected", "abc.def.ghi"),
        ("mqtt: passwd=hunter2", "hunter2"),
    ],
)
def test_redact_masks_secret_parameters_in_plain_text(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_a_registered_secret_is_masked_anywhere() -> None:
    register_secret("Zq9-registered-secret")
    assert "Zq9-registered-secret" not in redact("broker said: bad login Zq9-registered-secret")
    register_secret("ab")  # too short to replace as text: would mask ordinary words
    assert redact("about") == "about"


@pytest.mark.parametrize(("url", "quoted"), [
    ("rtsp://viewer:Zq%40ss%2Fw0rd@10.0.0.5/live", "Zq@ss/w0rd"),      # decoded userinfo
    ("rtsp://viewer:Zq%40ss%2Fw0rd@10.0.0.5/live", "Zq%40ss%2Fw0rd"),  # as written
    ("rtsp://10.0.0.5/live?password=Kx7%23abc&channel=1", "Kx7#abc"),
    ("rtsp://10.0.0.5/live;token=Tk-9911", "Tk-9911"),
    ("rtsp://10.0.0.5/user=admin_password=Nv-4412_channel=1_stream=0.sdp", "Nv-4412"),
])
def test_a_camera_urls_secrets_are_masked_where_a_tool_quotes_them_alone(
    url: str, quoted: str
) -> None:
    """FFmpeg and GStreamer quote parts of the URL on their own (an auth failure names the
    user's password decoded, an option dump names a parameter's value): every secret the
    config's camera URL holds is masked in free text too, as written and decoded."""
    for secret in url_secrets(url):
        register_secret(secret)
    line = f"[rtsp @ 0x55d1] method DESCRIBE failed: 401 Unauthorized ({quoted}) "
    assert quoted not in redact(line)
    assert "Unauthorized" in redact(line)


def test_the_log_filter_masks_every_logger_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info")
    try:
        url = "rtsp://admin:p@ss/word@10.0.0.5/s?user=a&password=s3cret"
        logging.getLogger("edge_agent.capture.camera").warning("camera door: cannot open %s", url)
        logging.getLogger("some.thirdparty.lib").error("connecting to " + url)
        try:
            raise RuntimeError(f"could not open {url}")
        except RuntimeError:
            logging.getLogger("edge_agent.service.agent").exception("crashed")
    finally:
        logging.getLogger().handlers.clear()
    written = stream.getvalue()
    assert "rtsp://***@10.0.0.5/s?user=a&password=***" in written
    assert "RuntimeError: could not open rtsp://***@" in written
    for secret in ("s3cret", "p@ss", "ss/word"):
        assert secret not in written


def test_the_filter_is_safe_with_a_bad_format_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d %d", ("a",), None)
    assert RedactFilter().filter(record) is True  # the handler reports the bad record


PASSWORD = "s3cret-Qx7"  # noqa: S105 (a test value that must not leak)
USERINFO = "admin:p@ss/word"


EXTRA_SECRETS = ("SECRETAx", "SECRETFx", "SECRETBx")  # the XMeye, %-escaped and short forms


def _camera_url(port: int) -> str:
    return (
        f"rtsp://{USERINFO}@127.0.0.1:{port}/user=admin_password=SECRETAx_channel=1_stream=0"
        f"?user=a&password={PASSWORD}&pass%77ord=SECRETFx&p=SECRETBx&u=admin"
    )


def _config(tmp_path: Path, samples: Path, broker: Broker, prefix: str, url: str) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {samples / 'models' / 'yolox_nano.onnx'}\n"
        f"  labels: {samples / 'models' / 'coco_labels.txt'}\n"
        "backend:\n  type: openvino\n  device: CPU\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  topic_prefix: {prefix}\n"
        f"cameras:\n  - id: door\n    type: rtsp\n    url: '{url}'\n"
        "    decoder: ffmpeg\n    stall_timeout_s: 1\n"
    )
    return config


def test_agent_never_publishes_or_logs_a_camera_password(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    """A real agent, an RTSP camera with secrets in userinfo and query, a closed port,
    and a reload rejected with the URL in its error: log, state, info and the reload
    file all lack the secrets."""
    url = _camera_url(free_port())
    config = _config(tmp_path, samples, broker, unique_prefix, url)
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        states = collector.wait_for("/door/state", count=1, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            json.loads(m.payload).get("last_error") for m in collector.on_topic("/door/state")
        ):
            time.sleep(0.2)
        states = collector.on_topic("/door/state")
        errors = [json.loads(m.payload)["last_error"] for m in states]
        assert any(errors), errors
        assert any("127.0.0.1" in (error or "") for error in errors), errors

        bad = config.read_text().replace("url: 'rtsp://", "url: 'http://")
        config.write_text(bad)
        agent.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [json.loads(m.payload) for m in collector.on_topic("/info") if m.payload]
            if infos and (infos[-1].get("config") or {}).get("last_reload"):
                break
            time.sleep(0.2)
    finally:
        stop_agent(agent, log)
    infos = [json.loads(m.payload) for m in collector.on_topic("/info") if m.payload]
    last_reload = infos[-1]["config"]["last_reload"]
    assert last_reload["ok"] is False
    assert "http://***@127.0.0.1" in last_reload["error"], last_reload
    reload_file = (tmp_path / "state" / "last-reload.json").read_text()
    published = b"".join(m.payload for m in collector.messages).decode("utf-8", "replace")
    logged = log.read_text()
    assert "rtsp://***@127.0.0.1" in logged
    for where, text in (("log", logged), ("MQTT", published), ("reload file", reload_file)):
        for secret in (PASSWORD, "p@ss", "ss/word", *EXTRA_SECRETS):
            assert secret not in text, f"{secret!r} in the {where}:\n{text[-3000:]}"


def test_doctor_output_has_no_camera_password(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    config = _config(tmp_path, samples, broker, unique_prefix, _camera_url(free_port()))
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "doctor", "--config", str(config), *extra],
            capture_output=True, text=True, timeout=180, check=False,
        )
        assert "camera door" in done.stdout, done.stdout + done.stderr
        for secret in (PASSWORD, "p@ss", "ss/word", *EXTRA_SECRETS):
            assert secret not in done.stdout + done.stderr, done.stdout


@pytest.mark.parametrize(("url", "name", "after"), GENERATED[::3],
                         ids=[g[0] for g in GENERATED[::3]])
def test_pairs_in_free_text_are_masked_as_in_urls(url: str, name: str, after: str) -> None:
    """The same pairs quoted without the URL's scheme (a path in an FFmpeg or GStreamer
    message, a `key=value` log field) lose their values too."""
    path = url.split("554", 1)[1]
    for text in (f"cannot open {path}: 401", f"stream {path}, retrying", f'"{path}"'):
        shown = redact(text)
        assert "vW9" not in shown, shown
        assert redact(shown) == shown


@pytest.mark.parametrize("text", [
    "x" * 100_000, "a" * 100_000 + "!b=c", "password=x" + "_a" * 50_000, "p=" + "a_" * 50_000,
    "=" * 100_000, "a=" * 50_000, "rtsp://" + "@" * 100_000, "/" * 100_000 + "=",
    "rtsp://h/" + "user=a_" * 15_000, "é" * 100_000, 'a="' * 50_000, '="' * 50_000,
    "pw='" + "a" * 100_000, 'x' * 50_000 + '="' + 'y' * 50_000 + '"',
    "pass=***" * 12_500, "rtsp://h/" + "pass=***" * 12_500, "%70ass=***" * 10_000,
    "a" + " " * 100_000, "pw=" + " " * 100_000, "pw = \"" * 20_000,
], ids=lambda text: repr(text[:10]))
def test_redaction_time_is_linear_in_the_text(text: str) -> None:
    """Config errors quote values of up to 128 KiB: no pattern may backtrack over them
    (a 70,000-character value took seconds per line; 'pass=***' x 12,500 took 8 s)."""
    started = time.perf_counter()
    redact(text)
    pipeline_secrets(text)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(("pipeline", "secret"), [
    ('rtspsrc location=rtsp://10.0.0.5/s user-id=admin user-pw="Qx7 secret" ! appsink',
     "Qx7 secret"),
    ("rtspsrc location=rtsp://10.0.0.5/s user-pw='Qx7secret' ! appsink", "Qx7secret"),
    ("rtspsrc location=rtsp://10.0.0.5/s user-pw=Qx7secret ! appsink", "Qx7secret"),
    ('rtspsrc location="rtsp://admin:Qx7 secret@10.0.0.5/s" ! appsink', "Qx7 secret"),
    ("rtspsrc location=rtsp://admin:Qx7secret@10.0.0.5/s ! appsink", "Qx7secret"),
    ("souphttpsrc location=http://10.0.0.5/mjpg?token=Qx7secret ! jpegdec ! appsink",
     "Qx7secret"),
    ("rtspsrc location=rtsp://10.0.0.5/s user-id=admin user-pw = Qx7secret ! appsink",
     "Qx7secret"),  # GStreamer reads `name = value` as `name=value`
    ('rtspsrc user-pw  =  "Qx7 secret" ! appsink', "Qx7 secret"),
    ("rtspsrc location = rtsp://admin:Qx7secret@10.0.0.5/s ! appsink", "Qx7secret"),
])
def test_a_gstreamer_pipelines_secrets_are_masked_quoted_or_not(
    pipeline: str, secret: str
) -> None:
    """A `gstreamer` camera's pipeline holds its camera's password in a property, quoted
    or not, or in a URL (config/get shows the pipeline; GStreamer quotes parts of it)."""
    assert secret not in redact(pipeline)
    assert secret in pipeline_secrets(pipeline)
    register_secret(secret)
    assert secret not in redact(f"rtspsrc0: could not authenticate with {secret}")


@pytest.mark.parametrize("flag", ["true", "false", "yes", "OFF"])
def test_a_flag_in_a_secret_named_parameter_is_not_a_secret(flag: str) -> None:
    """`?auth=true` registered `true`, and every later `true` in a line was masked."""
    assert url_secrets(f"rtsp://10.0.0.5/live?auth={flag}&token=Kx7-9911") == ["Kx7-9911"]

