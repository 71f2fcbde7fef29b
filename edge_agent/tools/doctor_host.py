"""Doctor checks of the box itself: disk, clock, device permissions and the systemd unit.

Kept apart from `edge_agent.tools.doctor` (config, model, cameras, broker, the command) so each
stays small. `Check` and the status names live here because this module is the leaf:
doctor imports it, never the reverse, so there is no import cycle.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config.model import AgentConfig, UsbCamera

log = logging.getLogger(__name__)

OK, FAIL, WARN, INFO, SKIP = "OK", "FAIL", "WARN", "INFO", "SKIP"


@dataclass(frozen=True)
class Check:
    """One line of the checklist; `fix` says what to do when status is FAIL or WARN."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL


MIN_FREE_BYTES = 200 * 2**20
LOW_FREE_BYTES = 1024 * 2**20


def check_disk(state_dir: Path) -> Check:
    import shutil
    import tempfile

    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    room = f"{free / 2**30:.1f} GiB free"
    space_fix = (f"free space on the filesystem of {existing} (old logs: journalctl "
                 "--vacuum-size=200M; old recordings, packages)")
    if not state_dir.exists():
        writable = os.access(existing, os.W_OK)
        return Check("disk", OK if writable else WARN,
                     f"state_dir {state_dir} does not exist yet ({room} on {existing})",
                     f"the service creates it (StateDirectory=); by hand: mkdir -p {state_dir}")
    try:
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        return Check("disk", FAIL, f"state_dir {state_dir} is not writable: {exc.strerror}",
                     f"run as the agent's user (sudo -u edge-agent ...) or fix the owner: "
                     f"sudo chown -R edge-agent: {state_dir}")
    if free < MIN_FREE_BYTES:
        return Check("disk", FAIL, f"state_dir {state_dir}: only {room}", space_fix)
    if free < LOW_FREE_BYTES:
        return Check("disk", WARN, f"state_dir {state_dir}: {room}, getting low", space_fix)
    return Check("disk", OK, f"state_dir {state_dir} writable, {room}")


STA_UNSYNC = 0x0040
TIME_ERROR = 5
OLDEST_PLAUSIBLE = 1_704_067_200  # 2024-01-01: a clock before this was never set


def _adjtimex() -> tuple[bool, float] | None:
    """(synchronised, max error s) from the kernel's NTP state, None when unavailable."""
    import ctypes
    import ctypes.util

    c_long = ctypes.c_long

    class Timex(ctypes.Structure):
        _fields_ = [
            ("modes", ctypes.c_uint), ("offset", c_long), ("freq", c_long),
            ("maxerror", c_long), ("esterror", c_long), ("status", ctypes.c_int),
            ("constant", c_long), ("precision", c_long), ("tolerance", c_long),
            ("time_sec", c_long), ("time_usec", c_long), ("tick", c_long),
            ("ppsfreq", c_long), ("jitter", c_long), ("shift", ctypes.c_int),
            ("stabil", c_long), ("jitcnt", c_long), ("calcnt", c_long), ("errcnt", c_long),
            ("stbcnt", c_long), ("tai", ctypes.c_int), ("padding", ctypes.c_int * 11),
        ]

    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        adjtimex = ctypes.CDLL(library, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    timex = Timex()  # modes 0: read only, needs no privilege
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    synced = state != TIME_ERROR and not timex.status & STA_UNSYNC
    return synced, timex.maxerror / 1e6


def _timedatectl_synced() -> bool | None:
    import shutil
    import subprocess

    if shutil.which("timedatectl") is None:
        return None
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    return {"yes": True, "no": False}.get(answer) if done.returncode == 0 else None


def check_clock() -> Check:
    """Detections carry capture timestamps: a wrong clock makes every one of them wrong."""
    now = time.time()
    shown = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
    ntp_fix = ("enable time sync: sudo timedatectl set-ntp true (systemd-timesyncd) or chrony, "
               "and let the box reach an NTP server (UDP 123)")
    if now < OLDEST_PLAUSIBLE:
        return Check("clock", FAIL, f"the clock says {shown}: it was never set", ntp_fix)
    kernel = _adjtimex()
    synced = kernel[0] if kernel is not None else _timedatectl_synced()
    if synced is None:
        return Check("clock", WARN, f"{shown}; whether it is synchronised is unknown", ntp_fix)
    if not synced:
        error = f", max error {kernel[1]:.1f} s" if kernel is not None else ""
        return Check("clock", WARN, f"{shown}; not synchronised (kernel NTP state{error})",
                     ntp_fix)
    return Check("clock", OK, f"{shown}; synchronised")


DEVICE_PATTERNS = ("/dev/video*", "/dev/dri/renderD*", "/dev/accel/*", "/dev/nvhost*",
                   "/dev/nvidia*")


def _needed_devices(config: AgentConfig, present: list[str]) -> set[str]:
    """Device files this config cannot run without: its USB cameras and its accelerator."""
    needed = set()
    for camera in config.cameras:
        if isinstance(camera, UsbCamera) and camera.enabled:
            device = camera.device
            needed.add(f"/dev/video{device}" if isinstance(device, int) else str(device))
    device = str(getattr(config.backend, "device", "") or "").upper()
    kinds = {"GPU": "/dev/dri/renderD", "NPU": "/dev/accel/"}
    needed.update(path for kind, prefix in kinds.items() if device.startswith(kind)
                  for path in present if path.startswith(prefix))
    return needed


def check_devices(config: AgentConfig | None, root: Path = Path("/")) -> Check:
    """`root` stands for / (tests build a /dev tree elsewhere)."""
    import glob
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    found = sorted({"/" + str(Path(path).relative_to(root)) for pattern in DEVICE_PATTERNS
                    for path in glob.glob(str(root / pattern.lstrip("/")))})
    if not found:
        return Check("devices", INFO, "no camera or accelerator devices (" +
                     ", ".join(DEVICE_PATTERNS) + "); fine for RTSP/file cameras on the CPU")
    denied: dict[str, str] = {}
    for path in found:
        real = root / path.lstrip("/")
        if not os.access(real, os.R_OK | os.W_OK):
            try:
                denied[path] = grp.getgrgid(real.stat().st_gid).gr_name
            except (KeyError, OSError):
                denied[path] = "?"
    if not denied:
        return Check("devices", OK, f"{len(found)} device(s) usable by {user}: "
                     + " ".join(found[:8]) + (" ..." if len(found) > 8 else ""))
    groups = sorted(set(denied.values()) - {"?"})
    fix = (f"sudo usermod -aG {','.join(groups)} {user}, then log in again (the service's "
           "user gets these groups from scripts/install)" if groups else
           "check the device files' owner and mode (ls -l)")
    shown = ", ".join(f"{path} (group {group})" for path, group in denied.items())
    needed = _needed_devices(config, found) if config is not None else set()
    status = FAIL if needed & set(denied) else WARN
    return Check("devices", status, f"{user} cannot open {shown}", fix)


def check_service(unit: str) -> Check:
    import shutil
    import subprocess

    try:
        init = Path("/proc/1/comm").read_text().strip()
    except OSError:
        init = "unknown"
    if shutil.which("systemctl") is None or not (
        init == "systemd" or Path("/run/systemd/system").is_dir()
    ):
        return Check("service", INFO, f"not under systemd (PID 1 is {init}): no unit to check")

    def ask(verb: str) -> str:
        done = subprocess.run(["systemctl", verb, unit], capture_output=True, text=True,
                              timeout=10, check=False)
        return done.stdout.strip() or done.stderr.strip() or "unknown"

    active, enabled = ask("is-active"), ask("is-enabled")
    detail = f"{unit}: {active}, {enabled}"
    if enabled in ("not-found", "unknown") or "No such file" in enabled:
        return Check("service", WARN, f"{unit}: unit not installed", "sudo scripts/install")
    if active == "failed":
        return Check("service", FAIL, detail, f"journalctl -u {unit} -n 50 says why; after "
                     f"fixing: sudo systemctl restart {unit}")
    if active != "active":
        return Check("service", WARN, detail, f"sudo systemctl enable --now {unit}")
    if enabled != "enabled":
        return Check("service", WARN, f"{detail}: will not start at boot",
                     f"sudo systemctl enable {unit}")
    return Check("service", OK, detail)
