"""`edge-agent snapshot --json` flags its stamp with the agent's own clock trust
(edge_agent.clock.TRUST): before the fix it always said "clock_synced": true.

The kernel cannot be made unsynchronised in a test, so the trust's kernel probe (the one
injection point edge_agent.clock offers) answers False; the command itself runs for
real on a real video with real OpenVINO.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent import cli, clock
from tests.helpers import snapshot_config


@pytest.mark.parametrize("synced", [False, True])
def test_snapshot_json_carries_the_agents_clock_trust(
    tmp_path: Path, samples: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], synced: bool,
) -> None:
    trust = clock.ClockTrust(probe=lambda: synced)
    monkeypatch.setattr(clock, "TRUST", trust)
    video = samples / "media" / "vtest.mp4"
    camera = f"  - id: street\n    type: file\n    path: {video}\n"
    config = snapshot_config(tmp_path, samples, camera)
    code = cli.main(["snapshot", "street", "--config", str(config), "-o",
                     str(tmp_path / "s.jpg"), "--json"])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["clock_synced"] is synced
