"""System readings: this process's real /proc figures, and sysfs trees of boxes not at hand."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edge_agent.config.model import HealthConfig
from edge_agent.health.monitor import system_reasons
from edge_agent.health.system_stats import SystemStats, Temperature

TREES = Path(__file__).resolve().parents[2] / "hardware_health"


def test_intel_box_thermal_zones_and_coretemp(tmp_path: Path) -> None:
    stats = SystemStats(tmp_path, root=TREES / "intel_nuc")
    assert stats.temperatures() == (
        Temperature("acpitz", 27.8, "thermal", 119.0),
        Temperature("x86_pkg_temp", 52.0, "thermal", None),  # passive trips are not limits
        Temperature("acpitz/temp1", 27.8, "hwmon", 119.0),
        Temperature("nvme/Composite", 41.85, "hwmon", 84.85),
        Temperature("coretemp/Package id 0", 52.0, "hwmon", 100.0),
        Temperature("coretemp/Core 0", 50.0, "hwmon", 100.0),
        Temperature("coretemp/Core 8", 49.0, "hwmon", 100.0),
    )
    assert stats.gpu_load_percent() is None
    assert system_reasons(stats.read(), HealthConfig(disk_min_free_percent=0), tmp_path) == []


def test_jetson_orin_skips_an_unreadable_zone_and_reads_gpu_load(tmp_path: Path) -> None:
    stats = SystemStats(tmp_path, root=TREES / "jetson_orin")
    sensors = {t.sensor: t for t in stats.temperatures()}
    assert sorted(sensors) == ["cpu-thermal", "cv0-thermal", "soc0-thermal", "tj-thermal"]
    assert sensors["cpu-thermal"].celsius == 47.281
    assert sensors["tj-thermal"].critical_c == 102.5
    assert stats.gpu_load_percent() == 34.5


def test_jetson_nano_hot_cpu_degrades_but_pmic_quirk_does_not(tmp_path: Path) -> None:
    stats = SystemStats(tmp_path, root=TREES / "jetson_nano")
    snapshot = stats.read()
    sensors = {t.sensor: t.celsius for t in snapshot.temperatures}
    assert sensors["PMIC-Die"] == 100.0
    assert snapshot.gpu_load_percent == 100.0
    reasons = system_reasons(snapshot, HealthConfig(disk_min_free_percent=0), tmp_path)
    # CPU-therm is 98.5 °C with a 101 °C critical trip: within the 5 °C margin.
    assert reasons == ["temperature CPU-therm at 98.5 °C, limit 101 °C"]
    cooler = HealthConfig(disk_min_free_percent=0, thermal_margin_c=2)
    assert system_reasons(snapshot, cooler, tmp_path) == []


def test_process_cpu_memory_and_disk_of_this_machine(tmp_path: Path) -> None:
    stats = SystemStats(tmp_path / "not" / "created" / "yet", root=TREES / "intel_nuc")
    stats.read()
    started = time.monotonic()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # keep one core busy for 0.3 s of CPU time
        pass
    snapshot = stats.read()
    # 0.3 s of CPU over the wall time it took: 100 % on an idle core, less on a loaded
    # machine (parallel test workers), never more than the cores this process can use.
    expected = 0.3 / (time.monotonic() - started) * 100
    assert 0.5 * expected < snapshot.cpu_percent < 250, (snapshot.cpu_percent, expected)
    status = Path("/proc/self/status").read_text()
    vm_rss = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("VmRSS:"))) * 1024
    assert abs(snapshot.rss_bytes - vm_rss) < 0.1 * vm_rss
    usage = shutil.disk_usage(tmp_path)
    assert snapshot.disk_total_bytes == usage.total
    assert abs(snapshot.disk_free_bytes - usage.free) < 0.05 * usage.total
    assert len(snapshot.load) == 3
    full = system_reasons(snapshot, HealthConfig(disk_min_free_percent=100), tmp_path)
    assert full[0].startswith("disk almost full:")
