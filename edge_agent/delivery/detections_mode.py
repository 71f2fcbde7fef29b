"""Which frames' detections are published: `publish.detections` of a camera.

every_frame: all (the default, as before events existed). off: none. on_change: a frame
whose set of objects differs from the last published one, or the first frame after
`keepalive_s` without a message (so a consumer can tell "nothing changed" from "agent
gone"). The set is the track ids when tracking runs (a new or lost object is a change;
one that moves is not), else the labels with their counts (a third person is a change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge_agent.config.events_publish import PublishConfig


def scene_key(
    labels: Sequence[str], track_ids: np.ndarray | None
) -> tuple[frozenset[int], tuple[tuple[str, int], ...]]:
    """What on_change compares: tracked ids, and labels (with counts) of untracked boxes.

    `track_ids` is aligned with `labels`, -1 for a detection not tracked (tentative);
    None when tracking is off (then every detection counts by its label).
    """
    if track_ids is None:
        return frozenset(), tuple(sorted(Counter(labels).items()))
    ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
    untracked = [label for label, tid in zip(labels, ids.tolist(), strict=True) if tid < 0]
    tracked = frozenset(int(t) for t in ids[ids >= 0].tolist())
    return tracked, tuple(sorted(Counter(untracked).items()))


class DetectionsMode:
    """Decides, frame by frame, whether the detections message goes out."""

    def __init__(self, config: PublishConfig) -> None:
        self.config = config
        self._last_key: object = None
        self._last_sent: float | None = None

    def wants(
        self, labels: Sequence[str], track_ids: np.ndarray | None, now_mono: float
    ) -> bool:
        """True to publish this frame; call once per processed frame, in order.

        `now_mono` is the frame's monotonic capture time (s).
        """
        mode = self.config.detections
        if mode == "every_frame":
            return True
        if mode == "off":
            return False
        key = scene_key(labels, track_ids)
        stale = self._last_sent is None or now_mono - self._last_sent >= self.config.keepalive_s
        if key == self._last_key and not stale:
            return False
        self._last_key, self._last_sent = key, now_mono
        return True
