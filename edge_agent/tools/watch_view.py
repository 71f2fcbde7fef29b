"""What `edge-agent watch` shows: the state collected from the box's topics, and the table.

`WatchState.on_message` takes every message, whatever it holds: a payload that is not
what the agent sends (see edge_agent.tools.watch_message) is kept as "bad message on <topic>:
<why>" and shown under the table, and watching goes on. `render` is a pure function of
the state, so the table can be tested without a terminal or a broker.
"""

from __future__ import annotations

import collections
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.health.snapshot import CameraHealth, HealthSnapshot
from edge_agent.tools.watch_counts import ShapeBoard
from edge_agent.tools.watch_message import (
    DETECTIONS,
    INFO,
    STATE,
    BadMessageError,
    read_health,
    read_object,
    read_text,
)

MAX_FRAMES_KEPT = 20_000
"""Per camera; bounds memory even for a very fast camera and a long window."""
MAX_BAD_KEPT = 20
"""Topics whose last message was bad, remembered at once (the newest)."""
BAD_SHOWN = 5
MAX_LINE = 300
"""Characters of a line: a 1 MB camera id or error text must not fill the terminal."""
CONTROL = {code: "?" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x0A}
"""Terminal control characters in payload text (escape sequences) are shown as '?'."""


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
    health: HealthSnapshot | None = None
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    bad: collections.OrderedDict[str, str] = field(default_factory=collections.OrderedDict)
    bad_total: int = 0
    shapes: ShapeBoard = field(default_factory=ShapeBoard)
    """Zone occupancy and line counts (events)."""

    def camera(self, camera_id: str) -> CameraStats:
        if camera_id not in self.cameras:
            self.cameras[camera_id] = CameraStats(collections.deque(maxlen=MAX_FRAMES_KEPT))
        return self.cameras[camera_id]

    def on_message(self, topic: str, payload: bytes, arrived: float, wall: float) -> None:
        """One message; `arrived` is time.monotonic(), `wall` time.time() at arrival.

        Never raises: whatever a message holds, it is either taken or recorded as bad.
        """
        try:
            self._take(topic, payload, arrived, wall)
        except BadMessageError as exc:
            self.note_bad(topic, str(exc))
        except Exception as exc:  # a fault of watch itself: still one bad message
            self.note_bad(topic, f"watch could not read it ({type(exc).__name__}: {exc})")
        else:
            self.bad.pop(topic, None)

    def note_bad(self, topic: str, why: str) -> None:
        self.bad_total += 1
        self.bad.pop(topic, None)
        self.bad[topic] = why
        while len(self.bad) > MAX_BAD_KEPT:
            self.bad.popitem(last=False)

    def _take(self, topic: str, payload: bytes, arrived: float, wall: float) -> None:
        prefix = self.base_topic + "/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix):]
        if not payload and rest in ("status", "info", "health"):
            setattr(self, rest, None)  # an empty retained message clears the topic
        elif rest == "status":
            self.status = read_text(payload)
        elif rest == "info":
            self.info = read_object(payload, INFO, "info")
        elif rest == "health":
            self.health = read_health(payload)
        elif rest.endswith("/detections") and rest.count("/") == 1:
            body = read_object(payload, DETECTIONS, "detections")
            self._detections(rest.split("/")[0], body, arrived, wall)
        elif self.shapes.take(rest, payload):
            pass
        elif rest.endswith("/state") and rest.count("/") == 1:
            if payload.lstrip().startswith(b"{"):
                state = read_object(payload, STATE, "state").get("state")
            else:
                state = read_text(payload)
            self.camera(rest.split("/")[0]).state = state or None

    def _detections(self, camera_id: str, body: dict[str, Any], arrived: float,
                    wall: float) -> None:
        captured = _unix_time(body.get("timestamp"))
        infer_ms = body.get("inference_ms")
        classes = Counter(str(item.get("label", item.get("class_id")))
                          for item in body.get("detections") or [] if item is not None)
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
    except (ValueError, OverflowError, OSError):
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


def _health_cameras(health: HealthSnapshot | None) -> dict[str, CameraHealth]:
    """Per-camera entries of the health message, by camera id."""
    cameras = health.cameras if health is not None and health.cameras else ()
    return {str(camera.id): camera for camera in cameras}


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _health_lines(health: HealthSnapshot) -> list[str]:
    """The box as a whole: status and why, and the figures a technician asks for first.

    Read from a message, any field may be None (absent): its figure is left out.
    """
    status = health.status.value if health.status is not None else "?"
    reasons = "; ".join(health.reasons or ())
    lines = [f"health: {status}" + (f" ({reasons})" if reasons else "")]
    figures = []
    if health.uptime_s is not None:
        hours, seconds = divmod(int(health.uptime_s), 3600)
        figures.append(f"up {hours}h{seconds // 60:02d}m")
    system = health.system
    if system is not None and system.cpu_percent is not None:
        figures.append(f"cpu {system.cpu_percent:.0f}%")
    if system is not None and system.rss_bytes is not None:
        figures.append(f"rss {system.rss_bytes / 2**20:.0f} MiB")
    if system is not None and system.disk is not None and system.disk.free_percent is not None:
        figures.append(f"disk {system.disk.free_percent:.0f}% free")
    sensors = system.temperatures if system is not None and system.temperatures else ()
    temperatures = [sensor.celsius for sensor in sensors if sensor.celsius is not None]
    if temperatures:
        figures.append(f"hottest {max(temperatures):.0f} C")
    mqtt_state = health.mqtt
    if mqtt_state is not None:
        queued = "-" if mqtt_state.queued is None else mqtt_state.queued
        dropped = "-" if mqtt_state.dropped is None else mqtt_state.dropped
        figures.append(f"mqtt {'connected' if mqtt_state.connected else 'DISCONNECTED'}"
                       f", queued {queued}, dropped {dropped}")
    commands = health.commands
    if commands is not None:  # null: commands disabled; absent: an older agent
        figures.append(f"commands {_count(commands.received)} in, "
                       f"{_count(commands.rejected)} rejected, {_count(commands.failed)} "
                       f"failed, {_count(commands.dropped)} dropped")
    if figures:
        lines.append("        " + ", ".join(figures))
    return lines


def render(state: WatchState, now: float, wall: float) -> str:
    """The table for one screen; `now` is time.monotonic(), `wall` time.time().

    fps, infer ms and delay ms come from the detection messages themselves; state,
    in fps (frames read from the source) and dropped come from the health message
    when the agent publishes one. Payload text is shown without terminal control
    characters, each line at most MAX_LINE characters.
    """
    try:
        lines = _table(state, now, wall)
    except Exception as exc:  # never lose the screen to one odd value
        lines = [f"{state.base_topic} on {state.broker}",
                 f"(cannot draw the table: {type(exc).__name__}: {exc})"]
    shown = list(state.bad.items())[-BAD_SHOWN:]
    lines += [f"bad message on {topic}: {why}" for topic, why in shown]
    if state.bad_total > len(shown):
        lines.append(f"({state.bad_total} bad message(s) in all since watch started)")
    return "\n".join(_clip(line.translate(CONTROL)) for line in lines)


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


def _table(state: WatchState, now: float, wall: float) -> list[str]:
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
        entry = health_cameras.get(camera_id)
        health_state = entry.state if entry is not None else None
        camera_state = str(health_state or (stats.state if stats else None) or "-")
        figures = camera_figures(stats, now, state.window_s) if stats else {}
        if stats is None or stats.last_arrival is None:
            age, classes = "never", "(no detection messages yet)"
        else:
            age = f"{now - stats.last_arrival:.1f} s ago"
            classes = ", ".join(f"{label} {count:.1f}"
                                for label, count in list(figures["per_frame"].items())[:6])
            classes = classes or ("nothing" if figures["frames"] else "(none in the window)")
        input_fps = entry.input_fps if entry is not None else None
        dropped = entry.frames_dropped if entry is not None else None
        lines.append(
            f"{camera_id:<16} {camera_state:<9} {_number(figures.get('fps')):>6} "
            f"{_number(input_fps):>6} {_number(dropped, 0):>7} "
            f"{_number(figures.get('inference_ms')):>8} {_number(figures.get('delay_ms'), 0):>8} "
            f"{age:>10}  {classes}"
        )
        if entry is None:
            continue
        for label, text in (("last error", entry.last_error),
                            ("processing error", entry.processing_error)):
            if text:
                lines.append(f"{'':<16} {label}: {text}")
        if entry.drift is not None and entry.drift.reasons:
            lines.append(f"{'':<16} view changed: {', '.join(entry.drift.reasons)}")
    if not order:
        lines.append("(no cameras seen yet: is the agent running and publishing here?)")
    counts = state.shapes.render(order)
    if counts:
        lines += ["", "counts and occupancy:", *counts]
    return lines
