"""The `models:` section: how deployed model versions are fetched, checked and kept.

Which folders a deploy by path may read is `commands.allowed_paths` (one rule for every
path argument of a command).

Kept apart from edge_agent.config.model so the fleet settings grow here, not there;
docs/models.md describes the lifecycle these settings drive.
"""

from __future__ import annotations

from pydantic import Field

from edge_agent.config.rules import Strict


class ModelsConfig(Strict):
    """Model versions deployed by `model/deploy` into <state_dir>/models/."""

    keep: int = Field(
        3, ge=1, le=50,
        description="Versions kept on disk besides the active one, for model/rollback.",
    )
    max_download_mb: float = Field(
        1024.0, gt=0, le=1_000_000, description="Largest model a deploy may fetch or copy (MB)."
    )
    download_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Seconds a download may wait for the server's bytes."
    )
    download_retries: int = Field(
        5, ge=0, le=100, description="Resumed attempts (HTTP Range) after a broken download."
    )
    validation_frames: int = Field(
        8, ge=1, le=64, description="Recent frames per camera the new model is checked on."
    )
    min_detection_ratio: float = Field(
        0.3, ge=0, le=1,
        description="The new model must find at least this share of the detections the "
        "running one found on the same recent frames.",
    )
    probation_s: float = Field(
        60.0, ge=0, le=86_400,
        description="Seconds after a swap in which health failures roll the model back.",
    )
    max_error_ratio: float = Field(
        0.1, ge=0, le=1,
        description="Share of frames failing during probation that rolls the model back.",
    )
    max_latency_ratio: float = Field(
        3.0, ge=1, le=1000,
        description="Mean inference time over the previous model's that rolls it back.",
    )
