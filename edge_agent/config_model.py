"""The configuration's shape: every field, its default and what it means.

Loading, YAML line mapping and error wording live in `edge_agent.config`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids end up in MQTT topics: no '/', '+', '#' or spaces."""


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class OpenVinoBackend(Strict):
    type: Literal["openvino"] = "openvino"
    device: str = Field("CPU", description="OpenVINO device: CPU, GPU, NPU, AUTO, GPU.1 ...")
    precision: Literal["auto", "bf16", "f16", "f32"] = Field(
        "auto", description="Inference precision hint; auto lets OpenVINO pick (bf16 on AMX CPUs)."
    )
    performance_hint: Literal["throughput", "latency"] = Field("throughput")
    num_requests: int = Field(0, ge=0, le=64, description="Infer requests in flight; 0: optimal.")
    cache_dir: Path | None = Field(
        None, description="Compiled-model cache so restarts skip compilation; default: state dir."
    )


class AutoBackend(Strict):
    type: Literal["auto"] = "auto"
    device: str | None = Field(None, description="Force a device for the chosen backend.")


BackendConfig = Annotated[OpenVinoBackend | AutoBackend, Field(discriminator="type")]


class TlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    insecure: bool = Field(False, description="Skip hostname check (lab use only).")


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, description="Default: edge-agent-<device_id>.")
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds between pings.")
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = Field("edge-agent", pattern=r"^[^#+]+$")
    qos: Literal[0, 1, 2] = 1
    max_queued: int = Field(
        1000, ge=1, le=1_000_000, description="Messages held for the broker before dropping."
    )


class CameraBase(Strict):
    id: str = Field(pattern=SLUG, description="Camera id, used in MQTT topics.")
    enabled: bool = True


class FileCamera(CameraBase):
    type: Literal["file"]
    path: Path = Field(description="Video file.")
    loop: bool = Field(False, description="Start again at the end.")
    realtime: bool = Field(True, description="Pace frames at the file's fps; false: max speed.")


class RtspCamera(CameraBase):
    type: Literal["rtsp"]
    url: str = Field(pattern=r"^rtsps?://", description="rtsp://user:pass@host:554/path")
    transport: Literal["tcp", "udp"] = "tcp"


class UsbCamera(CameraBase):
    type: Literal["usb"]
    device: int | str = Field(0, description="V4L2 index (0) or path (/dev/video0).")
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    fps: float | None = Field(None, gt=0)


class GstreamerCamera(CameraBase):
    type: Literal["gstreamer"]
    pipeline: str = Field(description="GStreamer pipeline ending in appsink.")


CameraConfig = Annotated[
    FileCamera | RtspCamera | UsbCamera | GstreamerCamera, Field(discriminator="type")
]


class AgentConfig(Strict):
    device_id: str = Field(
        default_factory=socket.gethostname, pattern=SLUG, description="Box id in MQTT topics."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: Path = Field(
        Path("/var/lib/edge-agent"), description="Caches and spool (systemd StateDirectory)."
    )
    model: ModelConfig
    backend: BackendConfig = Field(default_factory=AutoBackend)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    cameras: list[CameraConfig] = Field(min_length=1)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraBase]) -> list[CameraBase]:
        seen: set[str] = set()
        for cam in cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice; ids must be unique")
            seen.add(cam.id)
        return cameras

    @model_validator(mode="after")
    def _some_camera_enabled(self) -> AgentConfig:
        if not any(cam.enabled for cam in self.cameras):
            raise ValueError("every camera is disabled; enable at least one")
        return self
