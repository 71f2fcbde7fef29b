"""The systemd unit passes systemd-analyze; install/uninstall lay out and remove the files.

`systemd-analyze verify` insists that the ExecStart= binary exists. The unit names
/usr/local/bin/edge-agent, which scripts/install creates and the test machine lacks, so
the tests verify a copy in tmp_path whose ExecStart= path alone is replaced by a real
edge-agent entry point: this interpreter's, or the one a staged install just built.
Nothing outside tmp_path is touched: staged installs use `--root`, and the one unstaged
install (user creation) runs in a private mount namespace over copies of /etc and friends.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from edge_agent.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "edge-agent.service"
INSTALL = REPO / "scripts" / "install"
UNINSTALL = REPO / "scripts" / "uninstall"
LINK = "/usr/local/bin/edge-agent"
VENV_ENTRY = "/opt/edge-agent/bin/edge-agent"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing: apt-get install -y systemd",
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value in order (keys such as DeviceAllow= repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key].append(value)
    return sections


def verify(unit_text: str, entry_point: Path, tmp_path: Path) -> str:
    """systemd-analyze verify on a copy whose ExecStart= binary is `entry_point`."""
    assert unit_text.count(f"ExecStart={LINK} ") == 1
    copy = tmp_path / "verify" / "edge-agent.service"
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(unit_text.replace(f"ExecStart={LINK} ", f"ExecStart={entry_point} "))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def this_entry_point() -> Path:
    beside = Path(sys.executable).parent / "edge-agent"
    found = beside if beside.exists() else shutil.which("edge-agent")
    if found is None:
        pytest.skip("no edge-agent entry point: pip install -e .")
    return Path(found)


def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_analyze
def test_unit_verifies_without_a_single_message(tmp_path: Path) -> None:
    output = verify(UNIT.read_text(), this_entry_point(), tmp_path)
    assert output == ""  # no unknown keys, unparsable values or missing binaries


@needs_analyze
def test_verify_does_report_a_typo(tmp_path: Path) -> None:
    """The check above is only worth something if a bad key shows up in the output."""
    text = UNIT.read_text().replace("LockPersonality=yes", "LockPersonallity=yes")
    text = text.replace("WatchdogSec=30", "WatchdogSec=half a minute")
    output = verify(text, this_entry_point(), tmp_path)
    assert "Unknown key 'LockPersonallity'" in output
    assert "half a minute" in output


def test_unit_settings() -> None:
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"] == ["on-failure"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["User"] == ["edge-agent"]
    assert service["Group"] == ["edge-agent"]
    assert service["StateDirectory"] == ["edge-agent"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in service["DeviceAllow"]}
    assert {"char-video4linux", "char-drm", "char-accel", "char-nvidia*", "/dev/nvmap"} <= allowed
    assert all(value.endswith(" rw") for value in service["DeviceAllow"])
    assert "MemoryDenyWriteExecute" not in service  # JIT in OpenVINO and CUDA
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_watchdog_restarts_never_exhaust_the_start_limit() -> None:
    """A long outage (restart every WatchdogSec + RestartSec) must not end in "failed"."""
    unit = parse_unit(UNIT.read_text())
    interval = int(unit["Unit"]["StartLimitIntervalSec"][0])
    burst = int(unit["Unit"]["StartLimitBurst"][0])
    cycle = int(unit["Service"]["WatchdogSec"][0]) + int(unit["Service"]["RestartSec"][0])
    assert interval // cycle + 1 < burst


def test_exec_start_is_what_install_links_and_the_cli_accepts() -> None:
    command = parse_unit(UNIT.read_text())["Service"]["ExecStart"][0].split()
    assert command[0] == LINK
    assert f"LINK={LINK}" in INSTALL.read_text()
    args = build_parser().parse_args(command[1:])
    assert args.command == "run"
    assert str(args.config) == "/etc/edge-agent/agent.yaml"


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK)
    run_script("bash", "-n", script)
    if shutil.which("shellcheck"):
        run_script("shellcheck", script)


def test_install_into_a_root_without_venv_then_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    output = run_script(INSTALL, "--root", root, "--no-venv").stdout
    assert "systemctl not run" in output

    unit = root / "etc/systemd/system/edge-agent.service"
    config = root / "etc/edge-agent/agent.yaml"
    link = root / LINK.lstrip("/")
    assert unit.read_text() == UNIT.read_text()
    assert config.read_text() == (REPO / "configs/agent.yaml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert link.is_symlink()
    assert os.readlink(link) == VENV_ENTRY
    assert (root / "var/lib/edge-agent/models").is_dir()
    assert not (root / "opt/edge-agent").exists()

    # A technician's file survives a reinstall, byte for byte.
    config.write_text("device_id: edited-on-site\n")
    again = run_script(INSTALL, "--root", root, "--no-venv").stdout
    assert "kept /etc/edge-agent/agent.yaml" in again
    assert config.read_text() == "device_id: edited-on-site\n"

    run_script(UNINSTALL, "--root", root)
    assert not unit.exists()
    assert not link.is_symlink()
    assert config.read_text() == "device_id: edited-on-site\n"
    assert (root / "var/lib/edge-agent/models").is_dir()
    run_script(UNINSTALL, "--root", root)  # idempotent

    run_script(UNINSTALL, "--root", root, "--purge")
    assert not (root / "etc/edge-agent").exists()
    assert not (root / "var/lib/edge-agent").exists()


def test_uninstall_leaves_files_it_did_not_make(tmp_path: Path) -> None:
    root = tmp_path / "root"
    link = root / LINK.lstrip("/")
    link.parent.mkdir(parents=True)
    link.write_text("#!/bin/sh\n")  # someone else's edge-agent, not our link
    (root / "opt/edge-agent").mkdir(parents=True)  # not a venv
    output = run_script(UNINSTALL, "--root", root).stdout
    assert link.read_text() == "#!/bin/sh\n"
    assert (root / "opt/edge-agent").is_dir()
    assert "not a virtualenv" in output


@pytest.mark.slow
@needs_analyze
def test_install_into_a_root_with_a_real_venv(tmp_path: Path) -> None:
    """The full path: a venv, pip install of this repository, the entry point runs.

    --system-site-packages lets pip find the dependencies this interpreter already has
    (about 10 s instead of downloading OpenVINO and OpenCV again).
    """
    root = tmp_path / "root"
    run_script(INSTALL, "--root", root, "--python", sys.executable, "--system-site-packages")
    entry = root / VENV_ENTRY.lstrip("/")
    assert os.readlink(root / LINK.lstrip("/")) == VENV_ENTRY

    version = run_script(entry, "--version").stdout
    assert version.startswith("edge-agent ")
    checked = run_script(entry, "check-config", root / "etc/edge-agent/agent.yaml").stdout
    assert ": OK" in checked

    unit = root / "etc/systemd/system/edge-agent.service"
    assert verify(unit.read_text(), entry, tmp_path) == ""

    run_script(INSTALL, "--root", root, "--python", sys.executable, "--system-site-packages")
    assert run_script(entry, "--version").stdout == version  # reinstall over itself

    run_script(UNINSTALL, "--root", root)
    assert not (root / "opt/edge-agent").exists()
    assert (root / "etc/edge-agent/agent.yaml").exists()


def _can_sandbox() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_sandbox(), reason="needs root and mount namespaces (unshare -m)")
def test_install_as_root_creates_the_user_then_purge_removes_it(tmp_path: Path) -> None:
    """The real, unstaged path (useradd, groups, ownership) inside a private mount namespace.

    Copies of /etc and empty /opt, /usr/local/bin, /var/lib, /var/cache are mounted over
    the real ones for the duration of one shell, so the machine's users stay untouched.
    """
    sandbox = {name: tmp_path / name for name in ("etc", "opt", "bin", "lib", "cache")}
    for path in sandbox.values():
        path.mkdir()
    shutil.copytree("/etc", sandbox["etc"], symlinks=True, dirs_exist_ok=True)
    script = f"""
        set -eu
        mount --bind {sandbox["etc"]} /etc
        mount --bind {sandbox["opt"]} /opt
        mount --bind {sandbox["bin"]} /usr/local/bin
        mount --bind {sandbox["lib"]} /var/lib
        mount --bind {sandbox["cache"]} /var/cache
        {INSTALL} --no-venv
        echo "groups: $(id -nG edge-agent)"
        echo "shell: $(getent passwd edge-agent | cut -d: -f6,7)"
        echo "config: $(stat -c '%U:%G %a' /etc/edge-agent/agent.yaml)"
        echo "state: $(stat -c '%U:%G %a' /var/lib/edge-agent)"
        echo "models: $(stat -c '%U:%G %a' /var/lib/edge-agent/models)"
        {INSTALL} --no-venv
        {UNINSTALL} --purge
        {UNINSTALL} --purge
        if id edge-agent 2>/dev/null; then echo "user: still there"; fi
    """
    output = run_script("unshare", "-m", "--propagation", "private", "bash", "-c", script).stdout
    assert "created user edge-agent" in output
    groups = output.split("groups: ")[1].splitlines()[0].split()
    assert {"edge-agent", "video", "render"} <= set(groups)
    assert "shell: /var/lib/edge-agent:/usr/sbin/nologin" in output
    assert "config: root:edge-agent 640" in output
    assert "state: edge-agent:edge-agent 750" in output
    assert "models: edge-agent:edge-agent 750" in output
    assert "kept /etc/edge-agent/agent.yaml" in output
    assert "removed user edge-agent" in output
    assert "user: still there" not in output
