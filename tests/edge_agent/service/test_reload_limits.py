"""SIGHUP reload reads the new file with the same bounded loader as check-config: an
alias bomb or 500-deep brackets are rejected at once, the main loop never stalls."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import Broker, start_agent, stop_agent, write_config

BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _rejections(log: Path) -> int:
    return log.read_text().count("reload rejected")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [(BOMB, "alias bomb"), ("extra: " + "[" * 500 + "]" * 500 + "\n", "nested more than")],
    ids=["alias-bomb", "deep-brackets"],
)
def test_a_bomb_on_reload_is_rejected_quickly_and_frames_keep_flowing(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str,
    bad: str, problem: str,
) -> None:
    street = samples / "media" / "vtest.mp4"
    camera = f"  - id: street\n    type: file\n    path: {street}\n    loop: true\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, camera)
    good = config.read_text()
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=5, timeout=60)
        config.write_text(bad + good)
        sent = time.monotonic()
        agent.send_signal(signal.SIGHUP)
        while _rejections(log) == 0 and time.monotonic() - sent < 30:
            time.sleep(0.05)
        elapsed = time.monotonic() - sent
        assert _rejections(log) == 1, log.read_text()
        assert elapsed < 3.0, f"reload took {elapsed:.1f} s to reject the file"
        assert problem in log.read_text()
        before = len(collector.on_topic("/street/detections"))
        collector.wait_for("/street/detections", count=before + 5, timeout=30)
        assert agent.poll() is None
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
