"""How a HardwareReport reads: the boot log's one line and `edge-agent probe`'s table.

Kept apart from edge_agent/selection/probe.py so that the probe itself is only reading and
parsing; the `probe` command (edge_agent/tools/probe_command.py) prints these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.selection.probe import HardwareReport
from engines import registry

log = logging.getLogger(__name__)

TEGRA_SOCS = {
    "tegra210": "Tegra X1 (Maxwell GPU)",
    "tegra186": "Tegra X2 (Pascal GPU)",
    "tegra194": "Xavier (Volta GPU)",
    "tegra234": "Orin (Ampere GPU)",
    "tegra264": "Thor (Blackwell GPU)",
}
"""Tegra SoC (device-tree compatible) -> the name a technician knows it by."""


def summary_line(report: HardwareReport) -> str:
    """One line for the boot log: enough to see why a backend was chosen."""
    cpu = report.cpu
    isa = [name for name, present in (("avx2", cpu.avx2), ("avx512", cpu.avx512),
                                      ("vnni", cpu.vnni), ("amx", cpu.amx)) if present]
    if cpu.arch == "aarch64":
        isa = list(cpu.features)
    parts = [f"{cpu.arch} {cpu.model or '?'} x{cpu.logical_cpus}"
             + (f" ({' '.join(isa)})" if isa else "")]
    if report.memory_mib is not None:
        parts.append(f"{report.memory_mib / 1024:.1f} GiB")
    if report.jetson is not None:
        jetson = report.jetson
        parts.append(f"{jetson.model or 'Jetson'} L4T {jetson.l4t or '?'} "
                     f"JetPack {jetson.jetpack or '?'}")
    parts.append(f"NVIDIA GPU: {_gpu_names(report) or 'none'}")
    intel = [f"{dev.kind} {dev.node}" for dev in report.intel_gpus + report.intel_npus]
    parts.append(f"Intel: {', '.join(intel) or 'none'}")
    runtimes = report.runtimes
    parts.append("runtimes: " + ", ".join(
        (f"{name} {version}" if version else f"{name} missing")
        + (f" [{' '.join(runtimes.devices[name])}]" if runtimes.devices.get(name) else "")
        for name, version in _module_versions(report)
    ))
    if report.problems:
        parts.append(f"{len(report.problems)} problem(s)")
    return "; ".join(parts)


def _module_versions(report: HardwareReport) -> list[tuple[str, str | None]]:
    """Each runtime module every registered backend reads, and its version here."""
    return [(label, report.runtimes.versions.get(label))
            for backend in registry.backends() for label in backend.modules]


def _gpu_names(report: HardwareReport) -> str:
    return ", ".join(
        f"{gpu.name or gpu.device_id or '?'} ({gpu.pci_slot}"
        + (f", driver {gpu.driver_version})" if gpu.driver_version else ", no driver)")
        for gpu in report.nvidia_gpus
    )


def format_table(report: HardwareReport) -> str:
    """The human view of `edge-agent probe`."""
    cpu, runtimes = report.cpu, report.runtimes
    rows = [
        ("root", report.root),
        ("cpu", f"{cpu.arch}, {cpu.vendor or '?'}, {cpu.model or '?'}, "
                f"{cpu.logical_cpus} logical CPUs"),
        ("cpu features", " ".join(cpu.features) or "none of interest"),
        ("memory", f"{report.memory_mib} MiB" if report.memory_mib is not None else "unknown"),
    ]
    jetson = report.jetson
    if jetson is None:
        rows.append(("jetson", "no"))
    else:
        rows += [
            ("jetson", jetson.model or "yes (no device-tree model)"),
            ("jetson soc", f"{jetson.soc} {TEGRA_SOCS.get(jetson.soc or '', '')}".strip()
             if jetson.soc else "unknown"),
            ("jetson module", jetson.module or "unknown"),
            ("l4t / jetpack", f"R{jetson.l4t or '?'} / {jetson.jetpack or jetson.note}"),
        ]
    integrated = f"integrated ({jetson.soc or 'Jetson'})" if jetson is not None else "none"
    rows.append(("nvidia gpu", _gpu_names(report) or integrated))
    for kind, devices in (("intel gpu", report.intel_gpus), ("intel npu", report.intel_npus)):
        rows.append((kind, ", ".join(
            f"{dev.node} {dev.device_id or '?'} ({dev.driver or 'no driver'}"
            + (f", {dev.render_node})" if dev.render_node else ")") for dev in devices
        ) or "none"))
    if Path(report.root) != Path("/"):
        rows.append(("note", "runtimes are this machine's; hardware is read from root"))
    chooser = {backend.name for backend in registry.backends() if backend.takes_auto_device}
    for name, version in _module_versions(report):
        listed = None if name in chooser else runtimes.devices.get(name)
        rows.append((name, (version + (f" [{' '.join(listed)}]" if listed else ""))
                     if version else
                     f"does not import: {runtimes.errors.get(name, 'not installed')}"))
    for backend in registry.backends():
        status = runtimes.status(backend.name)
        if status.summary and not status.usable:  # it imports, but cannot run
            rows.append((f"{backend.name} backend", f"not usable: {status.problem}"))
        if backend.takes_auto_device:  # the devices `auto` and `device:` choose among
            devices = " ".join(runtimes.devices.get(backend.name, ()))
            rows.append((f"{backend.name} devices",
                         devices or runtimes.errors.get(f"{backend.name}_devices", "-")))
    rows += [("problem", problem) for problem in report.problems] or [("problems", "none")]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
