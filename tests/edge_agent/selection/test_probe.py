"""The hardware probe on recorded /proc and /sys trees (tests/hardware), and live runtimes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.selection.probe import HardwareReport, Runtimes, detect_runtimes, probe
from edge_agent.selection.report import format_table
from edge_agent.selection.report import summary_line as summary

TREES = Path(__file__).resolve().parents[2] / "hardware"
NO_RUNTIMES = Runtimes(errors={"tensorrt": "No module named 'tensorrt'"})


def tree(name: str) -> HardwareReport:
    return probe(TREES / name, NO_RUNTIMES)


def copy_of(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(TREES / name, root)
    return root


@pytest.mark.parametrize("name", ["jetson_orin", "jetson_nano", "intel_nuc", "xeon_dgpu", "vm"])
def test_recorded_trees_read_without_problems(name: str) -> None:
    report = tree(name)
    assert report.problems == ()
    assert report.root == str(TREES / name)


def test_jetson_orin() -> None:
    report = tree("jetson_orin")
    jetson = report.jetson
    assert jetson is not None
    assert jetson.model == "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"
    assert jetson.compatible == (
        "nvidia,p3768-0000+p3767-0000", "nvidia,p3767-0000", "nvidia,tegra234"
    )
    assert (jetson.soc, jetson.module) == ("tegra234", "p3767-0000")
    assert (jetson.l4t, jetson.jetpack, jetson.note) == ("36.4.3", "6.2", "")
    cpu = report.cpu
    assert (cpu.arch, cpu.vendor, cpu.model, cpu.logical_cpus) == (
        "aarch64", "ARM", "Cortex-A78AE", 8
    )
    assert cpu.features == ("asimd", "asimdhp", "asimddp")
    assert (cpu.avx2, cpu.avx512, cpu.vnni, cpu.amx) == (False, False, False, False)
    assert report.memory_mib == 16031332 // 1024
    assert report.nvidia_gpus == ()  # PCIe root ports of vendor 0x10de are not GPUs
    assert report.nvidia == jetson.model
    assert (report.intel_gpus, report.intel_npus) == ((), ())


def test_jetson_nano() -> None:
    report = tree("jetson_nano")
    jetson = report.jetson
    assert jetson is not None
    assert jetson.model == "NVIDIA Jetson Nano Developer Kit"
    assert (jetson.soc, jetson.module) == ("tegra210", "p3448-0000-b00")
    assert (jetson.l4t, jetson.jetpack) == ("32.7.1", "4.6.1")
    assert (report.cpu.arch, report.cpu.model, report.cpu.logical_cpus) == (
        "aarch64", "Cortex-A57", 4
    )
    assert report.cpu.features == ("asimd",)
    assert not report.cpu.avx2
    assert report.memory_mib == 4059356 // 1024
    assert report.nvidia_gpus == ()


def test_intel_nuc_with_igpu_and_npu() -> None:
    report = tree("intel_nuc")
    assert report.jetson is None
    assert report.nvidia is None
    cpu = report.cpu
    assert (cpu.arch, cpu.vendor, cpu.model, cpu.logical_cpus) == (
        "x86_64", "GenuineIntel", "Intel(R) Core(TM) Ultra 7 155H", 22
    )
    assert (cpu.avx2, cpu.vnni, cpu.avx512, cpu.amx) == (True, True, False, False)
    assert "avx_vnni" in cpu.features
    [gpu] = report.intel_gpus
    assert (gpu.kind, gpu.node, gpu.device_id, gpu.driver, gpu.render_node) == (
        "GPU", "card0", "0x7d55", "i915", "renderD128"
    )
    [npu] = report.intel_npus
    assert (npu.kind, npu.node, npu.device_id, npu.driver) == ("NPU", "accel0", "0x7d1d",
                                                              "intel_vpu")
    assert report.nvidia_gpus == ()


def test_xeon_with_nvidia_card() -> None:
    report = tree("xeon_dgpu")
    cpu = report.cpu
    assert (cpu.model, cpu.logical_cpus) == ("Intel(R) Xeon(R) w5-2455X", 24)
    assert (cpu.avx2, cpu.avx512, cpu.vnni, cpu.amx) == (True, True, True, True)
    assert {"avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"} <= set(cpu.features)
    # Only the display function counts: not its HDMI audio function, not the ASPEED BMC VGA.
    [gpu] = report.nvidia_gpus
    assert (gpu.pci_slot, gpu.device_id, gpu.name, gpu.driver_version) == (
        "0000:17:00.0", "0x24b0", "NVIDIA RTX A4000", "550.127.05"
    )
    assert report.nvidia == "NVIDIA RTX A4000"
    assert report.intel_gpus == ()  # the nvidia-drm card has a render node but is not Intel
    assert report.jetson is None
    assert report.memory_mib == 63802


def test_a_gpu_only_the_driver_shows_still_counts(tmp_path: Path) -> None:
    root = copy_of("xeon_dgpu", tmp_path)
    shutil.rmtree(root / "sys")  # a container that sees /proc/driver/nvidia but not /sys
    [gpu] = probe(root, NO_RUNTIMES).nvidia_gpus
    assert (gpu.pci_slot, gpu.device_id, gpu.name, gpu.driver_version) == (
        "0000:17:00.0", None, "NVIDIA RTX A4000", "550.127.05"
    )


def test_plain_vm() -> None:
    report = tree("vm")
    assert (report.cpu.arch, report.cpu.model, report.cpu.logical_cpus) == (
        "x86_64", "Intel(R) Xeon(R) Processor", 2
    )
    assert report.memory_mib == 24684084 // 1024  # recorded MemTotal
    assert (report.jetson, report.nvidia, report.intel_gpus, report.intel_npus) == (
        None, None, (), ()
    )


def test_an_empty_root_is_an_empty_box_not_a_crash(tmp_path: Path) -> None:
    report = probe(tmp_path, NO_RUNTIMES)
    assert (report.cpu.arch, report.cpu.logical_cpus, report.memory_mib) == ("unknown", 0, None)
    assert (report.jetson, report.nvidia_gpus, report.intel_gpus) == (None, (), ())
    assert report.problems == ()  # missing files mean absent, not a problem


@pytest.mark.parametrize(
    ("line", "l4t", "jetpack"),
    [
        ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref", "35.4.1", "5.1.2"),
        ("# R35 (release), REVISION: 6.0, GCID: 36923193, BOARD: generic", "35.6.0", "5.1.x"),
        ("# R32 (release), REVISION: 7.5, GCID: 36562155, BOARD: t210ref", "32.7.5", "4.6.x"),
        ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic", "36.3.0", "6.0"),
    ],
)
def test_jetpack_from_l4t(tmp_path: Path, line: str, l4t: str, jetpack: str) -> None:
    root = copy_of("jetson_orin", tmp_path)
    (root / "etc" / "nv_tegra_release").write_text(line + "\n")
    jetson = probe(root, NO_RUNTIMES).jetson
    assert jetson is not None
    assert (jetson.l4t, jetson.jetpack) == (l4t, jetpack)


def test_unknown_l4t_says_jetpack_is_unknown(tmp_path: Path) -> None:
    root = copy_of("jetson_orin", tmp_path)
    (root / "etc" / "nv_tegra_release").write_text(
        "# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64\n"
    )
    report = probe(root, NO_RUNTIMES)
    assert report.jetson is not None
    assert (report.jetson.l4t, report.jetson.jetpack) == ("38.2.0", None)
    assert "L4T R38.2.0 is not in the JetPack table" in report.jetson.note
    assert "R38.2.0 / L4T R38.2.0 is not in the JetPack table" in format_table(report)


def test_garbled_files_are_reported_and_the_rest_still_read(tmp_path: Path) -> None:
    root = copy_of("jetson_orin", tmp_path)
    (root / "etc" / "nv_tegra_release").write_text("Jetson, probably\n")
    (root / "proc" / "meminfo").write_text("MemFree: 1 kB\n")
    (root / "sys" / "bus" / "pci" / "devices" / "0001:00:00.0" / "vendor").write_text("nvidia\n")
    report = probe(root, NO_RUNTIMES)
    assert report.jetson is not None  # still a Jetson: the device tree says tegra234
    assert (report.jetson.soc, report.jetson.l4t, report.jetson.jetpack) == ("tegra234", None, None)
    assert report.memory_mib is None
    assert report.cpu.model == "Cortex-A78AE"
    problems = "\n".join(report.problems)
    assert "etc/nv_tegra_release: no '# R<major> (release), REVISION: <x.y>' line" in problems
    assert "proc/meminfo: no 'MemTotal: N kB' line" in problems
    assert ("sys/bus/pci/devices/0001:00:00.0/vendor: expected a hex id like 0x8086, "
            "got 'nvidia'") in problems
    assert len(report.problems) == 3
    assert "problem" in format_table(report)
    assert "3 problem(s)" in summary(report)


def test_binary_and_unreadable_files_are_problems(tmp_path: Path) -> None:
    root = copy_of("intel_nuc", tmp_path)
    (root / "proc" / "cpuinfo").write_bytes(b"\xff\xfe\x00garbage\x9c")
    meminfo = root / "proc" / "meminfo"
    meminfo.unlink()
    meminfo.mkdir()  # reading a folder fails like an unreadable file (tests run as root)
    report = probe(root, NO_RUNTIMES)
    assert report.cpu.arch == "unknown"
    assert report.problems[0].startswith("proc/cpuinfo: not text (invalid start byte")
    assert report.problems[1].startswith("proc/meminfo: cannot be read (Is a directory")
    assert [gpu.node for gpu in report.intel_gpus] == ["card0"]  # the rest is still read


def test_cpuinfo_of_neither_kind_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nisa\t: rv64imafdc\n")
    report = probe(tmp_path, NO_RUNTIMES)
    assert (report.cpu.arch, report.cpu.logical_cpus) == ("unknown", 1)
    assert report.problems == (
        "proc/cpuinfo: neither x86 'vendor_id' nor ARM 'CPU implementer' found",
    )


def test_summary_line_and_table() -> None:
    line = summary(tree("xeon_dgpu"))
    assert "Intel(R) Xeon(R) w5-2455X x24 (avx2 avx512 vnni amx)" in line
    assert "NVIDIA GPU: NVIDIA RTX A4000 (0000:17:00.0, driver 550.127.05)" in line
    assert "tensorrt missing" in line
    assert "\n" not in line
    table = format_table(tree("jetson_orin"))
    assert "jetson soc        tegra234 Orin (Ampere GPU)" in table
    assert "l4t / jetpack     R36.4.3 / 6.2" in table
    assert "nvidia gpu        integrated (tegra234)" in table
    assert "tensorrt          does not import: No module named 'tensorrt'" in table


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--root", str(TREES / "intel_nuc"), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["cpu"]["model"] == "Intel(R) Core(TM) Ultra 7 155H"
    assert body["cpu"]["logical_cpus"] == 22
    assert body["intel_gpus"][0]["render_node"] == "renderD128"
    assert body["intel_npus"][0]["driver"] == "intel_vpu"
    assert body["jetson"] is None
    assert body["problems"] == []
    assert set(body["runtimes"]) == {"tensorrt", "pycuda", "openvino", "openvino_devices",
                                     "onnxruntime", "onnxruntime_devices", "errors"}
    # what `backend: auto` would try here: OpenVINO's CPU, then ONNX Runtime where it imports
    assert body["auto_order"][-1] in ("openvino/CPU", "onnxruntime")
    assert "openvino/CPU" in body["auto_order"][-2:]
    assert isinstance(body["passed_over"], list)


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--root", str(TREES / "jetson_nano")]) == 0
    out = capsys.readouterr().out
    assert "jetson            NVIDIA Jetson Nano Developer Kit" in out
    assert "l4t / jetpack     R32.7.1 / 4.6.1" in out
    assert "runtimes are this machine's" in out
    assert "backend auto tries: " in out


def test_cli_rejects_a_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--root", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_live_runtimes_match_what_imports_here() -> None:
    runtimes = detect_runtimes()
    assert runtimes.openvino is not None  # a project dependency
    assert "CPU" in runtimes.openvino_devices
    if importlib.util.find_spec("tensorrt") is None:
        assert runtimes.tensorrt is None
        assert "tensorrt" in runtimes.errors["tensorrt"]
        assert not runtimes.tensorrt_usable
        assert runtimes.tensorrt_problem().startswith("tensorrt does not import: ")


@pytest.mark.parametrize(
    ("version", "usable"),
    [("8.2.1", False), ("8.6.1.6", False), ("7.1.3", False), ("10.0.1", True),
     ("10.3.0", True), ("11.0.0", True), ("unknown", True)],
)
def test_tensorrt_version_gate(version: str, usable: bool) -> None:
    """Below 10 is too old; a version we cannot read is left to the backend's own check."""
    runtimes = Runtimes(tensorrt=version, pycuda="2024.1.2")
    assert runtimes.tensorrt_usable is usable
    assert ("too old" in runtimes.tensorrt_problem()) is not usable
    assert (version in runtimes.tensorrt_problem()) is not usable
