"""`edge-agent watch`: a live per-camera table from the box's own MQTT topics.

For a technician without an MQTT tool: connects with the config's own broker settings
(auth, TLS), subscribes to `<prefix>/<device_id>/#` and shows, per camera, the frame
rate, inference time, delivery delay and what is being detected. `render` is a pure
function of the collected state, so the table can be tested without a terminal.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.config_model import MqttConfig
from edge_agent.errors import AgentError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MAX_FRAMES_KEPT = 20_000
"""Per camera; bounds memory even for a very fast camera and a long window."""


class BrokerError(AgentError):
    """The broker cannot be used; `detail` says what happened, `fix` what to change."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"{detail}\n  fix: {fix}")
        self.detail = detail
        self.fix = fix


def connect(
    config: MqttConfig,
    client_id: str,
    timeout: float = 10.0,
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
) -> mqtt.Client:
    """A paho client connected with the config's auth and TLS, or BrokerError saying why."""
    import paho.mqtt.client as mqtt

    from edge_agent.publish import tls_context

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set_context(tls_context(config.tls))
        if config.tls.insecure:
            client.tls_insecure_set(True)
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: object, _f: object, code: Any, _p: object) -> None:
        outcome["code"] = code
        answered.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, code: Any, _p: object) -> None:
        outcome.setdefault("closed", code)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    if on_message is not None:
        client.on_message = on_message
    where = f"{config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, config.keepalive)
    except OSError as exc:
        raise BrokerError(*_socket_problem(exc, config)) from exc
    client.loop_start()
    answered.wait(timeout)
    code = outcome.get("code")
    if code is not None and not code.is_failure:
        return client
    client.loop_stop()
    client.disconnect()
    if code is not None:
        raise BrokerError(f"broker refused: {str(code).lower()}", _refusal_fix(str(code), config))
    tls_hint = (
        "is this the broker's TLS port? set the mqtt.tls section for it"
        if config.tls is None else "does the broker speak TLS on this port?"
    )
    if "closed" in outcome:
        raise BrokerError(f"{where} closed the connection without an MQTT answer", tls_hint)
    raise BrokerError(f"{where} sent no MQTT answer within {timeout:.0f} s", tls_hint)


def _socket_problem(exc: OSError, config: MqttConfig) -> tuple[str, str]:
    import socket
    import ssl

    where = f"{config.host}:{config.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the broker's certificate is not trusted ({exc.verify_message})",
                "set mqtt.tls.ca_file to the CA that signed the broker's certificate, and "
                "make mqtt.host the name in that certificate")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {where} failed: {exc.reason or exc}",
                "check that this port speaks TLS (8883 usually) and the mqtt.tls files")
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve {config.host}: {exc.strerror}",
                "check mqtt.host (name or address) and this box's DNS")
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing listens on {where} (connection refused)",
                "check mqtt.host and mqtt.port, and that the broker runs "
                "(systemctl status mosquitto on the broker)")
    if isinstance(exc, TimeoutError):
        return (f"no answer from {where} (timed out)",
                "check mqtt.host, the network route and firewalls between this box and the "
                "broker")
    return (f"cannot connect to {where}: {exc.strerror or exc}",
            "check mqtt.host, mqtt.port and the network")


def _refusal_fix(reason: str, config: MqttConfig) -> str:
    lowered = reason.lower()
    if "authoriz" in lowered or "user name or password" in lowered:
        if config.username is None:
            return ("the broker wants a login: set mqtt.username and mqtt.password "
                    "(check mqtt.username/password)")
        return ("check mqtt.username/password (and that the broker's password file has "
                "this user)")
    if "identifier" in lowered:
        return "set mqtt.client_id to a value the broker accepts, or remove it"
    if "unavailable" in lowered:
        return "the broker is up but not serving: check its log"
    return "check the broker's log for why it refused this client"


# -- state and rendering ----------------------------------------------------------------


@dataclass
class CameraStats:
    """Recent detection messages of one camera (arrival time, capture time, figures)."""

    frames: collections.deque[tuple[float, float | None, float | None, float | None, Counter[str]]]
    total: int = 0
    last_arrival: float | None = None
    state: str | None = None  # from health or a retained <camera>/state message


@dataclass
class WatchState:
    """Everything seen on the box's topics; updated by `on_message`, read by `render`."""

    base_topic: str
    broker: str = ""
    window_s: float = 10.0
    status: str | None = None
    info: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    unreadable: int = 0

    def camera(self, camera_id: str) -> CameraStats:
        if camera_id not in self.cameras:
            self.cameras[camera_id] = CameraStats(collections.deque(maxlen=MAX_FRAMES_KEPT))
        return self.cameras[camera_id]

    def on_message(self, topic: str, payload: bytes, arrived: float, wall: float) -> None:
        """One message; `arrived` is time.monotonic(), `wall` time.time() at arrival."""
        prefix = self.base_topic + "/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix):]
        try:
            if rest == "status":
                self.status = payload.decode("utf-8", "replace").strip()
            elif rest in ("info", "health"):
                body = json.loads(payload)
                setattr(self, rest, body if isinstance(body, dict) else None)
            elif rest.endswith("/detections") and rest.count("/") == 1:
                self._detections(rest.split("/")[0], json.loads(payload), arrived, wall)
            elif rest.endswith("/state") and rest.count("/") == 1:
                text = payload.decode("utf-8", "replace").strip()
                body = json.loads(text) if text.startswith("{") else text
                state = body.get("state") if isinstance(body, dict) else body
                self.camera(rest.split("/")[0]).state = str(state) if state else None
        except (ValueError, AttributeError, TypeError):
            self.unreadable += 1

    def _detections(self, camera_id: str, body: Any, arrived: float, wall: float) -> None:
        if not isinstance(body, dict):
            raise TypeError("detections payload is not an object")
        captured = _unix_time(body.get("timestamp"))
        infer_ms = body.get("inference_ms")
        classes = Counter(str(item.get("label", item.get("class_id")))
                          for item in body.get("detections") or [])
        stats = self.camera(camera_id)
        delay_ms = (wall - captured) * 1000 if captured is not None else None
        stats.frames.append((arrived, captured, float(infer_ms) if isinstance(
            infer_ms, (int, float)) else None, delay_ms, classes))
        stats.total += 1
        stats.last_arrival = arrived
        while stats.frames and stats.frames[0][0] < arrived - 2 * self.window_s:
            stats.frames.popleft()


def _unix_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def camera_figures(stats: CameraStats, now: float, window_s: float) -> dict[str, Any]:
    """fps, mean inference ms, mean delay ms and detections per frame by class, over the
    messages that arrived in the last `window_s` seconds before `now` (monotonic)."""
    recent = [frame for frame in stats.frames if frame[0] >= now - window_s]
    fps = None
    if len(recent) >= 2:
        captured = [frame[1] for frame in recent]
        if all(value is not None for value in captured) and captured[-1] > captured[0]:
            fps = (len(recent) - 1) / (captured[-1] - captured[0])  # type: ignore[operator]
        elif recent[-1][0] > recent[0][0]:
            fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
    classes: Counter[str] = Counter()
    for frame in recent:
        classes.update(frame[4])
    return {
        "frames": len(recent),
        "fps": fps,
        "inference_ms": _mean([f[2] for f in recent if f[2] is not None]),
        "delay_ms": _mean([f[3] for f in recent if f[3] is not None]),
        "per_frame": {label: count / len(recent) for label, count in classes.most_common()},
    }


def _health_cameras(health: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per-camera entries of the health message (docs/schemas/health.schema.json)."""
    cameras = (health or {}).get("cameras")
    if not isinstance(cameras, list):
        return {}
    return {str(item.get("id")): item for item in cameras if isinstance(item, dict)}


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _health_lines(health: dict[str, Any]) -> list[str]:
    """The box as a whole: status and why, and the figures a technician asks for first."""
    lines = [f"health: {health.get('status', '?')}"
             + (f" ({'; '.join(map(str, health['reasons']))})" if health.get("reasons") else "")]
    figures = []
    if isinstance(health.get("uptime_s"), (int, float)):
        hours, seconds = divmod(int(health["uptime_s"]), 3600)
        figures.append(f"up {hours}h{seconds // 60:02d}m")
    system = health.get("system") if isinstance(health.get("system"), dict) else {}
    if isinstance(system.get("cpu_percent"), (int, float)):
        figures.append(f"cpu {system['cpu_percent']:.0f}%")
    if isinstance(system.get("rss_bytes"), int):
        figures.append(f"rss {system['rss_bytes'] / 2**20:.0f} MiB")
    disk = system.get("disk") if isinstance(system.get("disk"), dict) else {}
    if isinstance(disk.get("free_percent"), (int, float)):
        figures.append(f"disk {disk['free_percent']:.0f}% free")
    temperatures = [t.get("celsius") for t in system.get("temperatures") or []
                    if isinstance(t, dict) and isinstance(t.get("celsius"), (int, float))]
    if temperatures:
        figures.append(f"hottest {max(temperatures):.0f} C")
    mqtt_state = health.get("mqtt") if isinstance(health.get("mqtt"), dict) else {}
    if mqtt_state:
        figures.append(f"mqtt {'connected' if mqtt_state.get('connected') else 'DISCONNECTED'}"
                       f", queued {mqtt_state.get('queued', '-')}"
                       f", dropped {mqtt_state.get('dropped', '-')}")
    if figures:
        lines.append("        " + ", ".join(figures))
    return lines


def render(state: WatchState, now: float, wall: float) -> str:
    """The table for one screen; `now` is time.monotonic(), `wall` time.time().

    fps, infer ms and delay ms come from the detection messages themselves; state,
    in fps (frames read from the source) and dropped come from the health message
    when the agent publishes one.
    """
    clock = datetime.fromtimestamp(wall).strftime("%H:%M:%S")
    lines = [f"{state.base_topic} on {state.broker}   status: {state.status or 'unknown'}"
             f"   {clock}"]
    info = state.info or {}
    if info:
        model = info.get("model") or {}
        size = model.get("input") or {}
        lines.append(
            f"agent {info.get('agent_version', '?')}: {info.get('backend', '?')} on "
            f"{info.get('device', '?')}, model {model.get('name', '?')} "
            f"({size.get('width', '?')}x{size.get('height', '?')}), since "
            f"{info.get('started_at', '?')}"
        )
    if state.health:
        lines += _health_lines(state.health)
    health_cameras = _health_cameras(state.health)
    order = [str(cam.get("id")) for cam in info.get("cameras") or [] if isinstance(cam, dict)]
    order += sorted((set(state.cameras) | set(health_cameras)) - set(order))
    lines.append("")
    lines.append(f"{'camera':<16} {'state':<9} {'fps':>6} {'in fps':>6} {'dropped':>7} "
                 f"{'infer ms':>8} {'delay ms':>8} {'last msg':>10}  detections per frame "
                 f"(last {state.window_s:g} s)")
    for camera_id in order:
        stats = state.cameras.get(camera_id)
        entry = health_cameras.get(camera_id, {})
        camera_state = str(entry.get("state") or (stats.state if stats else None) or "-")
        figures = camera_figures(stats, now, state.window_s) if stats else {}
        if stats is None or stats.last_arrival is None:
            age, classes = "never", "(no detection messages yet)"
        else:
            age = f"{now - stats.last_arrival:.1f} s ago"
            classes = ", ".join(f"{label} {count:.1f}"
                                for label, count in list(figures["per_frame"].items())[:6])
            classes = classes or ("nothing" if figures["frames"] else "(none in the window)")
        lines.append(
            f"{camera_id:<16} {camera_state:<9} {_number(figures.get('fps')):>6} "
            f"{_number(entry.get('input_fps')):>6} {_number(entry.get('frames_dropped'), 0):>7} "
            f"{_number(figures.get('inference_ms')):>8} {_number(figures.get('delay_ms'), 0):>8} "
            f"{age:>10}  {classes}"
        )
        for key in ("last_error", "processing_error"):
            if entry.get(key):
                lines.append(f"{'':<16} {key.replace('_', ' ')}: {entry[key]}")
        drift = entry.get("drift") if isinstance(entry.get("drift"), dict) else {}
        if drift.get("reasons"):
            lines.append(f"{'':<16} view changed: {', '.join(map(str, drift['reasons']))}")
    if not order:
        lines.append("(no cameras seen yet: is the agent running and publishing here?)")
    if state.unreadable:
        lines.append(f"{state.unreadable} message(s) could not be read (not the agent's JSON)")
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config

    config = load_config(args.config)
    device_id = args.device_id or config.device_id
    base = f"{config.mqtt.topic_prefix.rstrip('/')}/{device_id}"
    state = WatchState(base_topic=base, broker=f"{config.mqtt.host}:{config.mqtt.port}",
                       window_s=args.window)
    lock = threading.Lock()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with lock:
            state.on_message(message.topic, message.payload, time.monotonic(), time.time())

    client = connect(config.mqtt, f"edge-agent-watch-{uuid.uuid4().hex[:12]}",
                     on_message=on_message)
    try:
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.subscribe(f"{base}/#", qos=0)
        if not subscribed.wait(10):
            raise BrokerError(f"the broker did not confirm the subscription to {base}/#",
                              "check the broker's ACL for this user")
        _show(state, lock, args, sys.stdout.isatty())
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    return 0


def _show(state: WatchState, lock: threading.Lock, args: argparse.Namespace, tty: bool) -> None:
    """Redraw once a second; with --once print a single table after --seconds (default 3)."""
    started = time.monotonic()
    if args.once:
        time.sleep(args.seconds if args.seconds is not None else 3.0)
        with lock:
            print(render(state, time.monotonic(), time.time()), flush=True)
        return
    while True:
        with lock:
            text = render(state, time.monotonic(), time.time())
        # Clear only a terminal: piped into a file or a journal, escapes are noise.
        sys.stdout.write(("\x1b[H\x1b[2J" if tty else "\n") + text + "\n")
        sys.stdout.flush()
        if args.seconds is not None and time.monotonic() - started >= args.seconds:
            return
        time.sleep(1.0)


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "watch", help="live table per camera (fps, latency, detections) from the box's topics"
    )
    parser.add_argument("--config", type=Path, required=True,
                        help="agent YAML: broker, auth, TLS, topic prefix, device id")
    parser.add_argument("--device-id", help="watch another box on the same broker")
    parser.add_argument("--seconds", type=float,
                        help="stop after this long (default: until Ctrl-C; with --once: 3)")
    parser.add_argument("--once", action="store_true",
                        help="listen for --seconds, print one table and exit (scripts)")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds of messages behind the fps and per-class figures")
    parser.set_defaults(handler=_watch)
