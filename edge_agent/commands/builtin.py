"""The built-in commands: snapshot, reload, config/get, camera/restart, health/now.

Each handler only talks to the `Box`; what the result carries is in docs/commands.md.
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import Field

from edge_agent.commands.snapshot import encode_snapshot
from edge_agent.commands.spec import (
    SLUG_FIELD,
    Args,
    Call,
    Code,
    Command,
    FailedError,
    RejectedError,
    Reply,
)
from edge_agent.redact import MASK, is_secret_name, redact

RELOAD_TIMEOUT_S = 120.0
"""A reload may load a new model (tens of seconds on a small box)."""
RESTART_TIMEOUT_S = 30.0
RESULT_ENVELOPE = 1024
"""Bytes of a result besides the JPEG (request_id, timestamps, fields), an upper bound."""


class SnapshotArgs(Args):
    camera: str | None = Field(
        None, pattern=SLUG_FIELD, description="Camera id; default: the first running camera."
    )
    quality: int = Field(80, ge=10, le=95, description="JPEG quality.")
    max_width: int = Field(
        640, ge=32, le=4096, description="Scaled down to at most this width (pixels)."
    )
    topic: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,3}$",
        description="Publish the JPEG (raw bytes) on <prefix>/<device_id>/snapshot/<topic> "
        "instead of base64 in the result.",
    )


class CameraArgs(Args):
    camera: str = Field(pattern=SLUG_FIELD, description="Camera id.")


def snapshot(call: Call) -> Reply:
    """The camera's newest processed frame as JPEG, its detections drawn on it."""
    args: SnapshotArgs = call.args
    cameras = call.box.camera_ids()
    camera = args.camera or (cameras[0] if cameras else None)
    if camera is None or camera not in cameras:
        running = ", ".join(cameras) or "none"
        raise RejectedError(f"no running camera {camera!r}; running: {running}", Code.NOT_FOUND)
    latest = call.box.latest_frame(camera)
    if latest is None:
        raise FailedError(f"camera {camera} has no processed frame yet", Code.UNAVAILABLE)
    jpeg, width, height = encode_snapshot(latest, args.quality, args.max_width)
    fields: dict[str, Any] = {
        "camera": camera, "sequence": latest.sequence, "width": width, "height": height,
        "detections": len(latest.detections), "bytes": len(jpeg),
    }
    if args.topic is not None:
        subtopic = f"snapshot/{args.topic}"
        if len(jpeg) > call.box.message_limit(subtopic) or not call.box.publish(subtopic, jpeg):
            raise FailedError(f"the {len(jpeg)}-byte JPEG could not be published on {subtopic} "
                         "(over the broker's limit?)", Code.ERROR, **fields)
        return Reply.ok(**fields, topic=subtopic)
    encoded = base64.b64encode(jpeg).decode("ascii")
    limit = call.box.message_limit("cmd/snapshot/result") - RESULT_ENVELOPE
    if len(encoded) > limit:
        raise FailedError(f"the JPEG is {len(encoded)} bytes in base64, over the broker's "
                          f"limit of {limit}: ask with a smaller max_width or quality, or "
                          "with topic", Code.ERROR, **fields)
    return Reply.ok(**fields, jpeg_base64=encoded)


def reload(call: Call) -> Reply:
    """Re-read the config file, as SIGHUP does; the outcome of that reload."""
    record = call.box.reload(RELOAD_TIMEOUT_S)
    if not record.get("ok"):
        raise FailedError(f"reload rejected, the running config stays: {record.get('error')}",
                     Code.ERROR, reload=record)
    return Reply.ok(reload=record)


def config_get(call: Call) -> Reply:
    """The running config as JSON, secrets masked."""
    config = call.box.running_config().model_dump(mode="json")
    return Reply.ok(config=redacted(config))


def camera_restart(call: Call) -> Reply:
    """Stop and start one camera; frame sequence numbers continue."""
    camera = call.args.camera
    if camera not in call.box.camera_ids():
        raise RejectedError(f"no running camera {camera!r}", Code.NOT_FOUND)
    sequence = call.box.restart_camera(camera, RESTART_TIMEOUT_S)
    return Reply.ok(camera=camera, next_sequence=sequence)


def health_now(call: Call) -> Reply:
    """A health snapshot built and published now (retained, as the periodic one)."""
    return Reply.ok(health=call.box.health_now())


def redacted(value: Any, key: str = "") -> Any:
    """`value` (JSON data) with secret-named keys masked and URLs' logins removed."""
    if isinstance(value, dict):
        return {name: redacted(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [redacted(item, key) for item in value]
    if isinstance(value, str):
        return MASK if key and is_secret_name(key) else redact(value)
    return MASK if key and is_secret_name(key) and value is not None else value


COMMANDS = [
    Command("snapshot", snapshot, "A JPEG of a camera's newest frame with its boxes drawn.",
            args=SnapshotArgs, max_payload=1024),
    Command("config/get", config_get, "The running config, secrets masked.",
            max_payload=1024),
    Command("health/now", health_now, "Publish a health snapshot now and return it.",
            max_payload=1024),
    Command("reload", reload, "Re-read the config file, as SIGHUP does.",
            changes_box=True, max_payload=1024),
    Command("camera/restart", camera_restart, "Restart one camera's capture and pipeline.",
            args=CameraArgs, changes_box=True, max_payload=1024),
]
