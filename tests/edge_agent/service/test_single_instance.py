"""One agent per state directory: a second one is refused and the first goes on unharmed."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Broker, start_agent, stop_agent, write_config


def test_a_second_agent_on_the_same_state_dir_is_refused(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    """Found by a new user: two agents on one spool sent frames twice and crashed."""
    collector = subscribe(f"{unique_prefix}/#")
    video = samples / "media" / "vtest.mp4"
    cameras = f"  - id: street\n    type: file\n    path: {video}\n    loop: true\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, cameras)
    log = tmp_path / "first.log"
    first = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=5, timeout=60)
        second = start_agent(config)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1, output
        assert "another edge-agent (pid " in output, output
        assert "is running on state_dir" in output, output
        assert "Traceback" not in output, output
        seen = len(collector.on_topic("/street/detections"))
        collector.wait_for("/street/detections", count=seen + 20, timeout=60)
        assert first.poll() is None
    finally:
        stop_agent(first, log)
    assert first.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    sequences = [m["sequence"] for m in collector.json_on("/street/detections")]
    assert len(sequences) == len(set(sequences)), "a frame was published twice"
