"""Readings of the box itself: this process's CPU and memory, load, disk, temperatures.

Everything comes from /proc and sysfs, so it works the same on a Jetson and on an Intel
box without extra packages. `root` moves the sysfs tree, so tests read small recorded
trees (tests/hardware_health/) instead of this machine's.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GPU_LOAD_PATHS = (
    "sys/devices/gpu.0/load",  # Nano, TX2, Xavier
    "sys/devices/platform/gpu.0/load",
    "sys/devices/17000000.ga10b/load",  # Orin, JetPack 5
    "sys/devices/platform/17000000.ga10b/load",
    "sys/devices/platform/bus@0/17000000.gpu/load",  # Orin, JetPack 6
)
"""Jetson GPU load in tenths of a percent (0-1000); the first that exists is used."""

UNRELIABLE_SENSORS = frozenset({"PMIC-Die"})
"""Jetson Nano/TX2 report a fixed 100 °C here: shown, but never a reason to degrade."""

PLAUSIBLE_C = (-40.0, 150.0)
"""Readings outside this are driver placeholders, not temperatures."""

_HWMON_TEMP = re.compile(r"^temp(\d+)_input$")


@dataclass(frozen=True)
class Temperature:
    """One sensor; `critical_c` is the sensor's own trip point where it publishes one."""

    sensor: str
    celsius: float
    source: str  # "thermal" or "hwmon"
    critical_c: float | None = None


@dataclass(frozen=True)
class SystemSnapshot:
    cpu_percent: float  # of one core, like top: 250 = two and a half cores busy
    rss_bytes: int
    load: tuple[float, float, float]
    disk_free_bytes: int
    disk_total_bytes: int
    temperatures: tuple[Temperature, ...]
    gpu_load_percent: float | None

    @property
    def disk_free_percent(self) -> float:
        if not self.disk_total_bytes:
            return 0.0
        return 100.0 * self.disk_free_bytes / self.disk_total_bytes


class SystemStats:
    """Reads a snapshot on demand; CPU % is the change since the previous read."""

    def __init__(self, disk_path: Path, root: Path = Path("/")) -> None:
        self.disk_path = disk_path
        self.root = root
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._last_cpu = (time.monotonic(), self._cpu_ticks())
        self._gpu_load_path = next(
            (root / rel for rel in GPU_LOAD_PATHS if (root / rel).is_file()), None
        )

    def read(self) -> SystemSnapshot:
        free, total = self._disk()
        return SystemSnapshot(
            cpu_percent=self._cpu_percent(),
            rss_bytes=self._rss_bytes(),
            load=os.getloadavg(),
            disk_free_bytes=free,
            disk_total_bytes=total,
            temperatures=self.temperatures(),
            gpu_load_percent=self.gpu_load_percent(),
        )

    def temperatures(self) -> tuple[Temperature, ...]:
        """Thermal zones first (Jetson CPU/GPU/SoC, Intel x86_pkg_temp), then hwmon chips."""
        return (*self._thermal_zones(), *self._hwmon())

    def gpu_load_percent(self) -> float | None:
        if self._gpu_load_path is None:
            return None
        raw = _read_number(self._gpu_load_path)
        return None if raw is None else raw / 10.0

    # -- internals -------------------------------------------------------------------

    def _cpu_ticks(self) -> int:
        """utime + stime of this process. The command name may hold spaces and ')'."""
        try:
            stat = Path("/proc/self/stat").read_text()
        except OSError:
            return 0
        fields = stat.rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)

    def _cpu_percent(self) -> float:
        now, ticks = time.monotonic(), self._cpu_ticks()
        then, before = self._last_cpu
        self._last_cpu = (now, ticks)
        elapsed = now - then
        if elapsed <= 0:
            return 0.0
        return 100.0 * (ticks - before) / self._ticks_per_s / elapsed

    def _rss_bytes(self) -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * self._page_size
        except (OSError, IndexError, ValueError):
            return 0

    def _disk(self) -> tuple[int, int]:
        """Free space for this (unprivileged) user and the total, of the state directory."""
        path = self.disk_path
        while not path.exists() and path != path.parent:
            path = path.parent  # not created yet: report the filesystem it will be on
        try:
            stats = os.statvfs(path)
        except OSError as exc:
            log.debug("statvfs %s: %s", path, exc)
            return 0, 0
        return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize

    def _thermal_zones(self) -> list[Temperature]:
        readings = []
        seen: set[str] = set()
        for zone in sorted(
            (self.root / "sys/class/thermal").glob("thermal_zone*"), key=_number_suffix
        ):
            millis = _read_number(zone / "temp")  # Orin's GPU zone fails to read when idle
            if millis is None or not PLAUSIBLE_C[0] <= millis / 1000 <= PLAUSIBLE_C[1]:
                continue
            name = _read_text(zone / "type") or zone.name
            if name in seen:
                name = f"{name}.{_number_suffix(zone)}"
            seen.add(name)
            readings.append(Temperature(name, millis / 1000, "thermal", _critical_trip(zone)))
        return readings

    def _hwmon(self) -> list[Temperature]:
        readings = []
        for chip in sorted((self.root / "sys/class/hwmon").glob("hwmon*"), key=_number_suffix):
            chip_name = _read_text(chip / "name") or chip.name
            inputs = [(m, p) for p in chip.glob("temp*_input") if (m := _HWMON_TEMP.match(p.name))]
            for match, path in sorted(inputs, key=lambda item: int(item[0].group(1))):
                millis = _read_number(path)
                if millis is None or not PLAUSIBLE_C[0] <= millis / 1000 <= PLAUSIBLE_C[1]:
                    continue
                index = match.group(1)
                label = _read_text(chip / f"temp{index}_label") or f"temp{index}"
                critical = _read_number(chip / f"temp{index}_crit")
                readings.append(
                    Temperature(
                        f"{chip_name}/{label}", millis / 1000, "hwmon",
                        None if critical is None else critical / 1000,
                    )
                )
        return readings


def _critical_trip(zone: Path) -> float | None:
    """The zone's lowest `critical` trip point in °C, where the kernel publishes one."""
    limits = []
    for kind_path in zone.glob("trip_point_*_type"):
        if _read_text(kind_path) != "critical":
            continue
        millis = _read_number(kind_path.with_name(kind_path.name.replace("_type", "_temp")))
        if millis is not None and millis > 0:
            limits.append(millis / 1000)
    return min(limits) if limits else None


def _number_suffix(path: Path) -> int:
    digits = re.search(r"(\d+)$", path.name)
    return int(digits.group(1)) if digits else 0


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_number(path: Path) -> float | None:
    text = _read_text(path)
    try:
        return float(text) if text else None
    except ValueError:
        return None
