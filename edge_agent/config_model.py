"""The configuration's shape: every field, its default and what it means.

Loading, YAML line mapping and error wording live in `edge_agent.config`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

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
    type: Literal["openvino"] = Field("openvino", description="Intel CPU, iGPU or NPU.")
    device: str = Field("CPU", description="OpenVINO device: CPU, GPU, NPU, AUTO, GPU.1 ...")
    precision: Literal["auto", "bf16", "f16", "f32"] = Field(
        "auto", description="Inference precision hint; auto lets OpenVINO pick (bf16 on AMX CPUs)."
    )
    performance_hint: Literal["throughput", "latency"] = Field(
        "throughput", description="throughput: many cameras; latency: one camera, fastest frame."
    )
    num_requests: int = Field(0, ge=0, le=64, description="Infer requests in flight; 0: optimal.")
    input_conversion: Literal["model", "host"] = Field(
        "model",
        description="Where uint8 -> float, layout and colour conversion run: inside the "
        "compiled model (faster on CPU) or on the host.",
    )
    cache_dir: Path | None = Field(
        None, description="Compiled-model cache so restarts skip compilation; default: state dir."
    )


class AutoBackend(Strict):
    type: Literal["auto"] = Field("auto", description="First backend whose runtime is installed.")
    device: str | None = Field(None, description="Force a device for the chosen backend.")


BackendConfig = Annotated[OpenVinoBackend | AutoBackend, Field(discriminator="type")]


class TlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    insecure: bool = Field(False, description="Skip hostname check (lab use only).")


class MqttConfig(Strict):
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
        1000, ge=1, le=1_000_000, description="Messages held for the broker before dropping."
    )


class CameraBase(Strict):
    id: str = Field(pattern=SLUG, description="Camera id, used in MQTT topics.")
    enabled: bool = Field(True, description="false: keep the settings but do not capture.")
    stall_timeout_s: float = Field(
        10.0, ge=1.0, le=600.0,
        description="No frame for this long counts as a fault: the source is reopened.",
    )


class FileCamera(CameraBase):
    type: Literal["file"] = Field(description="A video file (tests, demos).")
    path: Path = Field(description="Video file.")
    loop: bool = Field(False, description="Start again at the end.")
    realtime: bool = Field(True, description="Pace frames at the file's fps; false: max speed.")


class RtspCamera(CameraBase):
    type: Literal["rtsp"] = Field(description="A network camera's RTSP stream.")
    url: str = Field(pattern=r"^rtsps?://", description="rtsp://user:pass@host:554/path")
    transport: Literal["tcp", "udp"] = Field(
        "tcp", description="tcp survives lossy links; udp has less delay."
    )


class UsbCamera(CameraBase):
    type: Literal["usb"] = Field(description="A V4L2 camera (USB, CSI with a V4L2 driver).")
    device: int | str = Field(0, description="V4L2 index (0) or path (/dev/video0).")
    width: int | None = Field(None, ge=1, description="Requested width; default: the camera's.")
    height: int | None = Field(None, ge=1, description="Requested height; default: the camera's.")
    fps: float | None = Field(None, gt=0, description="Requested frames/s; default: the camera's.")


class GstreamerCamera(CameraBase):
    type: Literal["gstreamer"] = Field(description="Any source GStreamer can open.")
    pipeline: str = Field(description="GStreamer pipeline ending in appsink.")


CameraConfig = Annotated[
    FileCamera | RtspCamera | UsbCamera | GstreamerCamera, Field(discriminator="type")
]


class AgentConfig(Strict):
    device_id: str = Field(
        default_factory=socket.gethostname, pattern=SLUG, description="Box id in MQTT topics."
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
    cameras: list[CameraConfig] = Field(min_length=1, description="Video sources, at least one.")

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
