"""Zone occupancy and line counts for `edge-agent watch` (retained topics, docs/events.md).

Kept per camera and shape, newest message wins; an empty retained message removes the
shape (it was deleted by a reload). Anything that is not a count table is a bad message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.tools.watch_message import TEXT, BadMessageError, read_object

OCCUPANCY: dict[str, Any] = {"timestamp": TEXT}
COUNTS: dict[str, Any] = {"timestamp": TEXT, "since": TEXT}
MAX_SHAPES = 200
"""Zones and lines remembered at once: a flood of odd topics must not grow watch."""


def _table(value: Any, where: str) -> dict[str, int]:
    """{label: count} with non-negative integer counts, or BadMessageError."""
    if not isinstance(value, dict):
        raise BadMessageError(f"{where}: expected an object of counts per class")
    for label, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadMessageError(f"{where}.{label}: expected a count, got {count!r:.40}")
    return {str(label): int(count) for label, count in value.items()}


@dataclass
class ShapeBoard:
    """The newest occupancy per (camera, zone) and counts per (camera, line)."""

    zones: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    lines: dict[tuple[str, str], tuple[str, dict[str, dict[str, int]]]] = field(
        default_factory=dict)

    def take(self, rest: str, payload: bytes) -> bool:
        """Take `<camera>/zones/<zone>/occupancy` or `<camera>/lines/<line>/counts`;
        False when `rest` is neither (not this board's topic)."""
        parts = rest.split("/")
        if len(parts) != 4 or (parts[1], parts[3]) not in (("zones", "occupancy"),
                                                           ("lines", "counts")):
            return False
        key = (parts[0], parts[2])
        table = self.zones if parts[1] == "zones" else self.lines
        if not payload:
            table.pop(key, None)
            return True
        if len(self.zones) + len(self.lines) >= MAX_SHAPES and key not in table:
            raise BadMessageError(f"more than {MAX_SHAPES} zones and lines: not shown")
        if parts[1] == "zones":
            body = read_object(payload, OCCUPANCY, "occupancy")
            self.zones[key] = _table(body.get("occupancy"), "occupancy")
        else:
            body = read_object(payload, COUNTS, "counts")
            counts = body.get("counts")
            if not isinstance(counts, dict):
                raise BadMessageError("counts: expected an object per direction")
            per_direction = {str(d): _table(v, f"counts.{d}") for d, v in counts.items()}
            self.lines[key] = (str(body.get("since") or "?"), per_direction)
        return True

    def render(self, camera_order: list[str]) -> list[str]:
        """Lines under the camera table: one per zone and per line, cameras in order."""
        cameras = camera_order + sorted({c for c, _ in [*self.zones, *self.lines]}
                                        - set(camera_order))
        out = []
        for camera in cameras:
            for (cam, zone), occupancy in sorted(self.zones.items()):
                if cam == camera:
                    inside = ", ".join(f"{label} {n}" for label, n in sorted(occupancy.items())
                                       if n) or "empty"
                    out.append(f"{camera:<16} zone {zone}: {inside}")
            for (cam, line), (since, counts) in sorted(self.lines.items()):
                if cam == camera:
                    text = "; ".join(
                        f"{direction} " + (", ".join(f"{label} {n}"
                                                     for label, n in sorted(table.items()))
                                           or "0")
                        for direction, table in sorted(counts.items()))
                    out.append(f"{camera:<16} line {line}: {text or 'no crossings'} "
                               f"(since {since})")
        return out
