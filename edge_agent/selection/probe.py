"""What this box is: Jetson or not, NVIDIA/Intel accelerators, CPU ISA, and which runtimes import.

Everything is read relative to a root so that tests (and `edge-agent probe --root`) can
run on recorded /proc and /sys trees. A missing file means "absent"; an unreadable or
garbled one is listed in `problems`, never fatal: the agent must boot on odd hardware.
The human and log views are in edge_agent/selection/report.py, the `probe` command in
edge_agent/tools/probe_command.py; the runtimes are read by each backend
(edge_agent/selection/runtimes.py).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.selection.runtimes import Runtimes, detect_runtimes

__all__ = ["HardwareReport", "Runtimes", "detect_runtimes", "probe"]

log = logging.getLogger(__name__)

NVIDIA_VENDOR = "0x10de"
INTEL_VENDOR = "0x8086"

JETPACK_BY_L4T: tuple[tuple[str, str], ...] = (
    ("32.7.1", "4.6.1"), ("32.7.2", "4.6.2"), ("32.7.3", "4.6.3"), ("32.7.4", "4.6.4"),
    ("32.7", "4.6.x"),
    ("35.1", "5.0.2"), ("35.2.1", "5.1"), ("35.3.1", "5.1.1"), ("35.4.1", "5.1.2"),
    ("35.5.0", "5.1.3"), ("35", "5.1.x"),
    ("36.3.0", "6.0"), ("36.4.0", "6.1"), ("36.4.3", "6.2"), ("36", "6.x"),
)
"""L4T release -> JetPack, most specific first; a prefix matches whole components."""

ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd4f": "Neoverse-V2",
}
"""ARM Ltd (implementer 0x41) part numbers of the cores found in edge boxes."""

X86_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)
ARM_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")
"""The ISA features that change how fast (or whether) an inference runtime runs here."""


@dataclass(frozen=True)
class Cpu:
    arch: str  # x86_64, aarch64 or unknown
    vendor: str | None
    model: str | None
    logical_cpus: int
    features: tuple[str, ...]  # the subset of X86_FEATURES / ARM_FEATURES present

    @property
    def avx2(self) -> bool:
        return "avx2" in self.features

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.features

    @property
    def vnni(self) -> bool:
        return "avx512_vnni" in self.features or "avx_vnni" in self.features

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.features


@dataclass(frozen=True)
class Jetson:
    model: str | None
    compatible: tuple[str, ...]
    soc: str | None  # tegra234 ...
    module: str | None  # p3767-0000 ... (the part after '+' in the board's compatible)
    l4t: str | None  # 36.4.3
    jetpack: str | None  # 6.2; None when the L4T release is not in JETPACK_BY_L4T
    note: str = ""


@dataclass(frozen=True)
class NvidiaGpu:
    pci_slot: str
    device_id: str | None
    name: str | None  # from the driver's information file; None without the driver
    driver_version: str | None


@dataclass(frozen=True)
class IntelDevice:
    kind: str  # GPU or NPU
    node: str  # card0, accel0
    device_id: str | None
    driver: str | None
    render_node: str | None = None  # renderD128 (GPUs only)


@dataclass(frozen=True)
class HardwareReport:
    root: str
    cpu: Cpu
    memory_mib: int | None
    jetson: Jetson | None
    nvidia_gpus: tuple[NvidiaGpu, ...]
    intel_gpus: tuple[IntelDevice, ...]
    intel_npus: tuple[IntelDevice, ...]
    runtimes: Runtimes
    problems: tuple[str, ...] = ()

    @property
    def nvidia(self) -> str | None:
        """What NVIDIA hardware there is, in words (None: none)."""
        if self.jetson is not None:
            return self.jetson.model or f"Jetson {self.jetson.soc or ''}".strip()
        names = [gpu.name or f"NVIDIA GPU {gpu.pci_slot}" for gpu in self.nvidia_gpus]
        return ", ".join(names) or None

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(dataclasses.replace(self, runtimes=Runtimes()))
        body["runtimes"] = self.runtimes.to_dict()
        return body


class _Reader:
    """Reads files under root and keeps a list of what could not be read or parsed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def text(self, relative: str) -> str | None:
        data = self.raw(relative)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem(relative, f"not text ({exc.reason} at byte {exc.start})")
            return None

    def raw(self, relative: str) -> bytes | None:
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problem(relative, f"cannot be read ({exc.strerror or exc})")
            return None

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern))

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def problem(self, relative: str, what: str) -> None:
        self.problems.append(f"{relative}: {what}")


def probe(root: Path = Path("/"), runtimes: Runtimes | None = None) -> HardwareReport:
    """Read the hardware under `root`; runtimes are detected live unless given."""
    reader = _Reader(Path(root))
    report = HardwareReport(
        root=str(root),
        cpu=_cpu(reader),
        memory_mib=_memory_mib(reader),
        jetson=_jetson(reader),
        nvidia_gpus=_nvidia_gpus(reader),
        intel_gpus=_intel_gpus(reader),
        intel_npus=_intel_npus(reader),
        runtimes=runtimes if runtimes is not None else detect_runtimes(),
        problems=(),
    )
    for problem in reader.problems:
        log.warning("hardware probe: %s", problem)
    return dataclasses.replace(report, problems=tuple(reader.problems))


# --- CPU and memory ---------------------------------------------------------------------------


def _cpu(reader: _Reader) -> Cpu:
    unknown = Cpu(arch="unknown", vendor=None, model=None, logical_cpus=0, features=())
    text = reader.text("proc/cpuinfo")
    if text is None:
        return unknown
    entries = [_fields(block) for block in re.split(r"\n\s*\n", text) if block.strip()]
    cpus = [entry for entry in entries if "processor" in entry]
    if not cpus:
        reader.problem("proc/cpuinfo", "no 'processor' entries; not a cpuinfo file?")
        return unknown
    first = cpus[0]
    if "vendor_id" in first:
        flags = set(first.get("flags", "").split())
        return Cpu("x86_64", first["vendor_id"], first.get("model name"), len(cpus),
                   tuple(name for name in X86_FEATURES if name in flags))
    if "CPU implementer" in first:
        features = set(first.get("Features", "").split())
        part = first.get("CPU part", "").lower()
        implementer = first["CPU implementer"].lower()
        model = ARM_PARTS.get(part) if implementer == "0x41" else None
        model = model or first.get("model name") or f"implementer {implementer} part {part}"
        vendor = "ARM" if implementer == "0x41" else f"implementer {implementer}"
        return Cpu("aarch64", vendor, model, len(cpus),
                   tuple(name for name in ARM_FEATURES if name in features))
    reader.problem("proc/cpuinfo", "neither x86 'vendor_id' nor ARM 'CPU implementer' found")
    return dataclasses.replace(unknown, logical_cpus=len(cpus))


def _fields(block: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in block.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def _memory_mib(reader: _Reader) -> int | None:
    text = reader.text("proc/meminfo")
    if text is None:
        return None
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if match is None:
        reader.problem("proc/meminfo", "no 'MemTotal: N kB' line")
        return None
    return int(match.group(1)) // 1024


# --- Jetson -----------------------------------------------------------------------------------


def _jetson(reader: _Reader) -> Jetson | None:
    release = reader.text("etc/nv_tegra_release")
    model_raw = reader.raw("proc/device-tree/model")
    compatible_raw = reader.raw("proc/device-tree/compatible")
    compatible = tuple(_strings(compatible_raw)) if compatible_raw else ()
    soc = next((entry.split(",", 1)[1] for entry in compatible
                if entry.startswith("nvidia,tegra")), None)
    if release is None and soc is None:
        return None
    model = _strings(model_raw)[0] if model_raw and _strings(model_raw) else None
    board = next((entry for entry in compatible if "+" in entry), None)
    module = board.split("+", 1)[1] if board else None
    l4t = _l4t_release(release, reader) if release is not None else None
    jetpack, note = _jetpack(l4t, release is not None)
    return Jetson(model, compatible, soc, module, l4t, jetpack, note)


def _strings(data: bytes) -> list[str]:
    """Device-tree properties are NUL-terminated (lists NUL-separated) strings."""
    return [part.decode("utf-8", "replace") for part in data.split(b"\0") if part.strip()]


def _l4t_release(text: str, reader: _Reader) -> str | None:
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    if match is None:
        first = text.strip().splitlines()[0][:80] if text.strip() else ""
        reader.problem("etc/nv_tegra_release",
                       f"no '# R<major> (release), REVISION: <x.y>' line (starts {first!r})")
        return None
    return ".".join(match.groups())


def _jetpack(l4t: str | None, have_release: bool) -> tuple[str | None, str]:
    if l4t is None:
        note = "L4T release unreadable" if have_release else "no etc/nv_tegra_release"
        return None, f"{note}: JetPack version unknown"
    parts = l4t.split(".")
    for prefix, jetpack in JETPACK_BY_L4T:
        if parts[: len(prefix.split("."))] == prefix.split("."):
            return jetpack, ""
    return None, (f"L4T R{l4t} is not in the JetPack table (edge_agent/selection/probe.py): "
                  "JetPack unknown")


# --- NVIDIA discrete GPUs ---------------------------------------------------------------------


def _nvidia_gpus(reader: _Reader) -> tuple[NvidiaGpu, ...]:
    """Display-class (0x03xxxx) PCI functions of NVIDIA; the driver adds names and version."""
    driver_version = None
    version_text = reader.text("proc/driver/nvidia/version")
    if version_text is not None:
        match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", version_text)
        if match is None:
            reader.problem("proc/driver/nvidia/version", "no 'Kernel Module <version>' in it")
        driver_version = match.group(1) if match else None
    names = {}
    for info in reader.glob("proc/driver/nvidia/gpus/*/information"):
        text = reader.text(reader.relative(info))
        fields = _fields(text) if text else {}
        if text is not None and "Model" not in fields:
            reader.problem(reader.relative(info), "no 'Model:' line")
        names[info.parent.name.lower()] = fields.get("Model")
    gpus = []
    for device in reader.glob("sys/bus/pci/devices/*"):
        vendor = _hex_id(reader, device / "vendor")
        klass = _hex_id(reader, device / "class")
        if vendor != NVIDIA_VENDOR or klass is None or not klass.startswith("0x03"):
            continue
        slot = device.name.lower()
        gpus.append(NvidiaGpu(slot, _hex_id(reader, device / "device"), names.pop(slot, None),
                              driver_version))
    # The driver knows GPUs a container's /sys may hide: still NVIDIA hardware.
    gpus += [NvidiaGpu(slot, None, name, driver_version) for slot, name in names.items()]
    return tuple(gpus)


def _hex_id(reader: _Reader, path: Path) -> str | None:
    text = reader.text(reader.relative(path))
    if text is None:
        return None
    value = text.strip().lower()
    if not re.fullmatch(r"0x[0-9a-f]+", value):
        reader.problem(reader.relative(path), f"expected a hex id like 0x8086, got {value[:40]!r}")
        return None
    return value


# --- Intel GPU and NPU ------------------------------------------------------------------------


def _intel_gpus(reader: _Reader) -> tuple[IntelDevice, ...]:
    """An Intel DRM card with a render node is a GPU OpenVINO's GPU plugin can use."""
    found = []
    for card in reader.glob("sys/class/drm/card*"):
        if not re.fullmatch(r"card\d+", card.name):
            continue  # card0-eDP-1 and such are connectors
        if _hex_id(reader, card / "device" / "vendor") != INTEL_VENDOR:
            continue
        render = [node.name for node in sorted((card / "device" / "drm").glob("renderD*"))]
        if not render:
            continue
        found.append(IntelDevice("GPU", card.name, _hex_id(reader, card / "device" / "device"),
                                 _driver(reader, card / "device"), render[0]))
    return tuple(found)


def _intel_npus(reader: _Reader) -> tuple[IntelDevice, ...]:
    found = []
    for accel in reader.glob("sys/class/accel/accel*"):
        if _hex_id(reader, accel / "device" / "vendor") != INTEL_VENDOR:
            continue
        driver = _driver(reader, accel / "device")
        if driver != "intel_vpu":
            continue
        found.append(IntelDevice("NPU", accel.name, _hex_id(reader, accel / "device" / "device"),
                                 driver))
    return tuple(found)


def _driver(reader: _Reader, device: Path) -> str | None:
    text = reader.text(reader.relative(device / "uevent"))
    match = re.search(r"^DRIVER=(\S+)", text or "", re.MULTILINE)
    return match.group(1) if match else None

