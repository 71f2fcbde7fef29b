"""The configuration's shape: every field, its default and what it means.

Loading lives in `edge_agent.config.loader`; YAML line mapping and error wording in
`edge_agent.config.located`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge_agent.config.commands import CommandsConfig
from edge_agent.config.detect import DetectConfig, MaskConfig, check_class_keys, unique_mask_names
from edge_agent.config.events_publish import PublishConfig, SnapshotConfig
from edge_agent.config.homeassistant import HomeAssistantConfig
from edge_agent.config.models_store import ModelsConfig
from edge_agent.config.rules import HOST, SLUG, MqttRules, Strict, TlsRules, default_device_id
from edge_agent.config.zones import LineConfig, TrackerConfig, ZoneConfig, unique_shape_names
from engines import registry
from engines.backend import Backend
from engines.input_size import check_input_size
from engines.metadata import is_decimal

__all__ = ["SLUG", "AgentConfig", "CameraConfig", "Strict"]


class ModelConfig(Strict):
    path: Path = Field(description="Model file: ONNX, OpenVINO IR (.xml) or TensorRT engine.")
    name: str | None = Field(None, description="Name reported in messages; default: file stem.")
    family: Literal["auto", "yolox", "ultralytics", "end2end", "yolov5", "ssd"] = Field(
        "auto", description="Output decoder; auto reads the model's metadata and output shape."
    )
    labels: Path | None = Field(
        None, description="Class names, one a line; default: the model's own metadata."
    )
    score_threshold: float = Field(0.35, ge=0.0, le=1.0, description="Drop weaker detections.")
    iou_threshold: float = Field(0.45, ge=0.0, le=1.0, description="Per-class NMS overlap limit.")
    max_detections: int = Field(100, ge=1, le=10000, description="Most detections per frame.")
    classes: list[str | int] | None = Field(
        None, description="Allow-list of class names or ids; default: all classes."
    )

    @field_validator("classes")
    @classmethod
    def _class_keys(cls, classes: list[str | int] | None) -> list[str | int] | None:
        return check_class_keys(classes)
    input_size: Literal["auto", "square"] | tuple[int, int] = Field(
        "auto", description="auto: each camera's aspect at the model's stride where the model "
        "reshapes (docs/input-size.md); square: the model's own size; [height, width]."
    )

    @field_validator("input_size", mode="before")
    @classmethod
    def _input_size(cls, value: object) -> object:
        return check_input_size(value)


def _strict(backend: Backend) -> type[Strict]:
    """A backend's own settings type with the agent's value rules on top (Strict)."""
    settings = backend.config
    strict: type[Strict] = type(settings.__name__.replace("Settings", "Backend"),
                                (Strict, settings), {"__module__": __name__,
                                                     "__doc__": settings.__doc__})
    return strict


BACKEND_SECTIONS: dict[str, type[Strict]] = {
    backend.name: _strict(backend) for backend in registry.declared()
}
"""The `type:` union's members, one per backend in engines.registry (the only list)."""

OpenVinoBackend = BACKEND_SECTIONS["openvino"]
TensorRtBackend = BACKEND_SECTIONS["tensorrt"]
"""Names kept for code and tests that build these sections directly."""


class AutoBackend(Strict):
    type: Literal["auto"] = Field(
        "auto", description="Best backend for this hardware (docs/backends.md, with fallback)."
    )
    device: str | None = Field(
        None, description="Force this OpenVINO device (CPU, GPU, NPU ...); no fallback."
    )


BackendConfig = Annotated[
    Union[(*BACKEND_SECTIONS.values(), AutoBackend)],
    Field(discriminator="type"),
]


class TlsConfig(TlsRules):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    insecure: bool = Field(False, description="Skip hostname check (lab use only).")


class SpoolConfig(Strict):
    enabled: bool = Field(
        True, description="Keep unacknowledged detections on disk; false: in memory only."
    )
    path: Path | None = Field(None, description="SQLite file; default: <state_dir>/spool.sqlite3.")
    max_mb: float = Field(
        256.0, gt=0, le=1_000_000, description="Most megabytes held; the oldest go first."
    )
    max_age_h: float = Field(
        168.0, gt=0, le=87_600, description="Hours a detection may wait before it is dropped."
    )


class MqttConfig(MqttRules):
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port; 8883 is usual for TLS.")
    client_id: str | None = Field(None, description="Default: edge-agent-<device_id>.")
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds between pings.")
    username: str | None = Field(None, description="Broker user; default: anonymous.")
    password: str | None = Field(None, description="Broker password; use ${VAR} to keep it out.")
    tls: TlsConfig | None = Field(None, description="Encrypt the connection; default: plain TCP.")
    topic_prefix: str = Field(
        "edge-agent", pattern=r"^[^#+]+$", description="First level of every topic."
    )
    qos: Literal[0, 1, 2] = Field(1, description="MQTT quality of service for detections.")
    max_queued: int = Field(
        1_000_000, ge=1, le=100_000_000,
        description="Most detection messages held for the broker; beyond, the oldest go.",
    )
    spool: SpoolConfig = Field(
        default_factory=SpoolConfig, description="Where detections wait while the broker is away."
    )
    max_message_bytes: int = Field(
        65_536, ge=1024, le=268_435_455,
        description="Largest detection payload sent; a bigger one keeps its best detections "
        "that fit (truncated: true). The broker's own limit (MQTT 5) lowers it by itself.",
    )
    protocol: Literal["auto", "mqtt5", "mqtt3.1.1"] = Field(
        "auto", description="auto: MQTT 5, falling back to 3.1.1 for a broker that refuses 5.",
    )


class CameraBase(Strict):
    id: str = Field(pattern=SLUG, description="Camera id, used in MQTT topics.")
    enabled: bool = Field(True, description="false: keep the settings but do not capture.")
    stall_timeout_s: float = Field(
        10.0, ge=1.0, le=600.0,
        description="No frame for this long counts as a fault: the source is reopened.",
    )
    zones: list[ZoneConfig] = Field(default_factory=list, description="Event zones (polygons).")
    lines: list[LineConfig] = Field(default_factory=list, description="Counting lines.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="Tracking.")
    _unique_shape_names = model_validator(mode="after")(unique_shape_names)
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Detect rate, limits.")
    masks: list[MaskConfig] = Field(default_factory=list, description="Ignore detections here.")
    _unique_mask_names = model_validator(mode="after")(unique_mask_names)
    publish: PublishConfig = Field(default_factory=PublishConfig, description="Detections stream.")
    snapshots: SnapshotConfig = Field(
        default_factory=SnapshotConfig, description="A JPEG per event (docs/events.md)."
    )


class FileCamera(CameraBase):
    type: Literal["file"] = Field(description="A video file (tests, demos).")
    path: Path = Field(description="Video file.")
    loop: bool = Field(False, description="Start again at the end.")
    realtime: bool = Field(True, description="Pace frames at the file's fps; false: max speed.")


class RtspCamera(CameraBase):
    type: Literal["rtsp"] = Field(description="A network camera's RTSP stream.")
    url: str = Field(
        pattern=r"^rtsps?://",
        description="rtsp://host:554/path; a login goes before the host: user:password@",
    )
    transport: Literal["tcp", "udp"] = Field(
        "tcp", description="tcp survives lossy links; udp has less delay."
    )
    decoder: Literal["auto", "ffmpeg", "gstreamer"] = Field(
        "auto",
        description="auto: Jetson hardware decoding (GStreamer nvv4l2decoder) where OpenCV "
        "has GStreamer and the decoder is installed, else FFmpeg; gstreamer: always "
        "GStreamer (software avdec without nvv4l2decoder); ffmpeg: always FFmpeg.",
    )
    codec: Literal["h264", "h265"] = Field(
        "h264", description="The stream's codec; GStreamer needs it, FFmpeg finds it itself."
    )
    latency_ms: int = Field(
        200, ge=0, le=60_000,
        description="GStreamer jitter buffer: less is less delay, more rides out a lossy link.",
    )


class UsbCamera(CameraBase):
    type: Literal["usb"] = Field(description="A V4L2 camera (USB, CSI with a V4L2 driver).")
    device: int | str = Field(0, description="V4L2 index (0) or path (/dev/video0).")
    width: int | None = Field(None, ge=1, description="Requested width; default: the camera's.")
    height: int | None = Field(None, ge=1, description="Requested height; default: the camera's.")
    fps: float | None = Field(None, gt=0, description="Requested frames/s; default: the camera's.")


class CsiCamera(CameraBase):
    type: Literal["csi"] = Field(
        description="A Jetson MIPI CSI camera through nvarguscamerasrc (needs OpenCV with "
        "GStreamer, as JetPack's python3-opencv has)."
    )
    sensor_id: int = Field(0, ge=0, le=255, description="Which CSI sensor: 0, 1 ... (sensor-id).")
    width: int = Field(1920, ge=1, le=16384, description="Capture width: a mode the sensor has.")
    height: int = Field(1080, ge=1, le=16384, description="Capture height: a mode the sensor has.")
    fps: int = Field(30, ge=1, le=1000, description="Frames/s: a rate the sensor mode has.")
    flip_method: int = Field(
        0, ge=0, le=7,
        description="nvvidconv flip-method: 0 none, 1 rotate 90 counter-clockwise, 2 rotate "
        "180, 3 rotate 90 clockwise, 4 flip horizontally, 5 upper-right diagonal, 6 flip "
        "vertically, 7 upper-left diagonal.",
    )


class GstreamerCamera(CameraBase):
    type: Literal["gstreamer"] = Field(description="Any source GStreamer can open.")
    pipeline: str = Field(description="GStreamer pipeline ending in appsink.")


CameraConfig = Annotated[
    FileCamera | RtspCamera | UsbCamera | CsiCamera | GstreamerCamera,
    Field(discriminator="type"),
]


class DriftConfig(Strict):
    """Rolling image and detection statistics compared with what the camera saw at start."""

    enabled: bool = Field(True, description="false: no drift statistics, no drift reasons.")
    sample_every: int = Field(
        5, ge=1, le=1000, description="Measure every k-th processed frame (cost ~0.2 ms each)."
    )
    baseline_samples: int = Field(
        60, ge=5, le=100_000, description="Samples after start that form the baseline."
    )
    window_samples: int = Field(
        30, ge=5, le=10_000, description="Most recent samples compared with the baseline."
    )
    dark_brightness: float = Field(
        20.0, ge=0, le=255, description="Mean grey level (0-255) below which a camera is dark."
    )
    blinded_brightness: float = Field(
        235.0, ge=0, le=255, description="Mean grey level above which a camera is blinded."
    )
    covered_contrast: float = Field(
        6.0, ge=0, le=128, description="Grey-level spread (std) below which the view is flat."
    )
    blur_ratio: float = Field(
        0.3, gt=0, lt=1, description="Sharpness below this share of the baseline: out of focus."
    )
    collapse_ratio: float = Field(
        0.2, gt=0, lt=1,
        description="Detections per frame below this share of the baseline: collapsed.",
    )
    min_baseline_detections: float = Field(
        0.5, ge=0, description="Baseline detections per frame needed to judge a collapse."
    )


class HealthConfig(Strict):
    interval_s: float = Field(
        30.0, ge=1.0, le=3600.0,
        description="Seconds between health messages (also sent on every state change).",
    )
    metrics_address: str = Field(
        "127.0.0.1:9108", description="HOST:PORT of /metrics and /healthz; '' turns them off."
    )
    disk_min_free_percent: float = Field(
        5.0, ge=0, le=100, description="Less free space in state_dir than this: degraded."
    )
    thermal_limit_c: float = Field(
        85.0, ge=20, le=150, description="Limit for sensors that publish no critical trip point."
    )
    thermal_margin_c: float = Field(
        5.0, ge=0, le=50, description="Degraded when a sensor is this close to its limit."
    )
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift watch.")

    @field_validator("metrics_address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        if address == "":
            return address
        host, _, port = address.rpartition(":")
        bad_host = not host or not HOST.match(host.removeprefix("[").removesuffix("]"))
        if bad_host or not is_decimal(port) or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"should be HOST:PORT with a port 1 to 65535 (got {address!r}); allowed: "
                "e.g. 127.0.0.1:9108, 0.0.0.0:9108, [::1]:9108, or '' to turn it off"
            )
        return address


class AgentConfig(Strict):
    device_id: str = Field(
        pattern=SLUG, description="Box id in MQTT topics; default: the host name."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least important messages that are logged."
    )
    state_dir: Path = Field(
        Path("/var/lib/edge-agent"), description="Caches, e.g. compiled models (StateDirectory)."
    )
    model: ModelConfig = Field(description="The detection model and how to read its output.")
    backend: BackendConfig = Field(
        default_factory=AutoBackend, description="Inference runtime; default: type auto."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Where detections go.")
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Health messages, metrics, drift watch."
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="Video sources, at least one.")
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )
    models: ModelsConfig = Field(
        default_factory=ModelsConfig, description="Deployed model versions (docs/models.md)."
    )
    commands: CommandsConfig = Field(
        default_factory=CommandsConfig, description="Commands over MQTT (off by default)."
    )

    _host_name_as_id = model_validator(mode="before")(default_device_id)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraBase]) -> list[CameraBase]:
        # A custom error type carries the index, so the YAML line of the second id is found.
        seen: dict[str, int] = {}
        for index, cam in enumerate(cameras):
            if cam.id in seen:
                raise PydanticCustomError(
                    "duplicate_camera_id",
                    "camera id '{id}' is already used by cameras[{first}]; ids must be unique",
                    {"id": cam.id, "index": index, "first": seen[cam.id]},
                )
            seen[cam.id] = index
        return cameras

    @model_validator(mode="after")
    def _some_camera_enabled(self) -> AgentConfig:
        if not any(cam.enabled for cam in self.cameras):
            raise PydanticCustomError(
                "no_enabled_camera", "every camera is disabled; enable at least one"
            )
        return self
