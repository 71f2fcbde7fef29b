"""The detection spool the MQTT config asks for: on disk in the state directory, or in memory."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config.model import MqttConfig
from edge_agent.publish.spool import Spool


def open_spool(config: MqttConfig, state_dir: Path | None) -> Spool:
    """The on-disk spool (in memory while its file is unusable), or one in memory."""
    settings = config.spool
    path = settings.path or (state_dir / "spool.sqlite3" if state_dir else None)
    bounds = {
        "max_messages": config.max_queued,
        "max_bytes": int(settings.max_mb * 1024 * 1024),
        "max_age_s": settings.max_age_h * 3600.0,
    }
    if not settings.enabled:
        return Spool(None, **bounds)  # chosen in the config: not an error
    spool = Spool(path, **bounds)
    if path is None:
        spool.error = "no state directory for the spool"
    return spool


def full_reason(config: MqttConfig) -> str:
    """The drop reason logged when the spool's bounds push out its oldest messages."""
    return (
        f"spool full ({config.max_queued} messages or {config.spool.max_mb:g} MB): "
        "oldest dropped"
    )
