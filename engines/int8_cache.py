"""Where INT8 builds live and what was decided about each.

One folder per (model hash, calibration settings) under `<state_dir>/int8/<key>/`:
`model.xml` + `model.bin` (the INT8 IR) and `verdict.json` (the guard's score, the
threshold it was judged against, and why). A refused build stays there for inspection
and is never loaded; the agent and `edge-agent quantize` read the verdict instead of
quantizing again. A later, lower `int8_min_f1` re-judges the stored score without
rebuilding; `edge-agent quantize --force` (or deleting the folder) rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from engines.int8_guard import GuardScore, verdict

log = logging.getLogger(__name__)

RECORD = "verdict.json"
RECIPE = 3
"""How engines/int8.py prepares the graph for NNCF; a change makes earlier builds stale.
1: the ONNX graph as read (activations split into Sigmoid * x); 2: through
ov.convert_model; 3: OpenVINO's offline fusions on the read model, ONNX and IR alike
(activations fused), which runs faster."""
MODEL = "model.xml"


@dataclass(frozen=True)
class Calibration:
    """The settings that make one INT8 build differ from another (part of the cache key).

    `frames`: calibration frames (NNCF subset_size); `fast`: NNCF fast bias correction
    (minutes faster on a small CPU, about the same accuracy on detectors); `preset`:
    NNCF preset, performance (symmetric, fastest on CPU) or mixed (asymmetric activations).
    """

    frames: int = 300
    fast: bool = True
    preset: str = "performance"

    def key(self, model_sha256: str) -> str:
        """16 hex digits: model hash, these settings, the NNCF version that quantizes and
        the RECIPE that prepares the graph."""
        text = json.dumps({"model": model_sha256, **asdict(self), "nncf": nncf_version(),
                           "recipe": RECIPE}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def nncf_version() -> str | None:
    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class BuildRecord:
    """What verdict.json holds: the build's score and the verdict at build time."""

    model_sha256: str
    model_path: str
    calibration: Calibration
    score: GuardScore
    min_f1: float
    passed: bool
    reason: str
    source: str
    """Where the calibration frames came from: 'cameras cam1, cam2' or 'images DIR'."""
    created_at: float
    build_s: float

    def judged(self, min_f1: float) -> tuple[bool, str]:
        """The verdict under today's threshold (the score does not change)."""
        return verdict(self.score, min_f1)

    def to_json(self) -> dict[str, object]:
        body = asdict(self)
        body["score"] = self.score.as_dict()
        return body

    @classmethod
    def from_json(cls, body: dict) -> BuildRecord:
        score = {k: int(body["score"][k]) for k in ("frames", "reference", "candidate",
                                                    "matched")}
        return cls(**{**body, "calibration": Calibration(**body["calibration"]),
                      "score": GuardScore(**score)})


def build_dir(state_dir: Path, key: str) -> Path:
    return Path(state_dir) / "int8" / key


def read_record(folder: Path) -> BuildRecord | None:
    """The folder's verdict; None when there is none, or it is damaged (rebuild then)."""
    path = folder / RECORD
    try:
        record = BuildRecord.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("INT8 build %s: unreadable %s (%s); it will be rebuilt", folder, RECORD, exc)
        return None
    if record.passed and not (folder / MODEL).is_file():
        log.warning("INT8 build %s: %s is missing; it will be rebuilt", folder, MODEL)
        return None
    return record


def write_record(folder: Path, record: BuildRecord) -> None:
    """Atomically, so a power cut never leaves half a verdict."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / (RECORD + ".tmp")
    temporary.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    os.replace(temporary, folder / RECORD)


def now() -> float:
    return time.time()
