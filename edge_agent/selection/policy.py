"""Which backend and device to try, in order, for this config on this hardware.

Pure: it reads a HardwareReport and the backend config and touches nothing, so every
branch is tested on recorded hardware trees. `edge_agent.selection.loading` does the trying.
The backends, their `auto` order and what hardware each wants come from engines.registry;
this module knows only how to find each kind of hardware. The policy is written down in
docs/backends.md ("Selection at boot"); keep them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.model import AutoBackend, BackendConfig
from edge_agent.selection.probe import HardwareReport
from engines import registry
from engines.backend import Backend, RuntimeStatus
from engines.metadata import is_decimal

INSTALL_HINT = "install per docs/backends.md"
INTEL_KINDS = {
    "intel-gpu": ("GPU", "the Intel GPU compute runtime (intel-opencl-icd)"),
    "intel-npu": ("NPU", "the Intel NPU driver (intel-driver-compiler-npu)"),
}
"""Hardware kind -> the device prefix a runtime lists it under, and what drives it."""


@dataclass(frozen=True)
class Candidate:
    """One backend/device to try, and why it is on the list."""

    backend: str  # registry name: tensorrt, openvino, onnxruntime
    device: str | None  # the backend's device name, or CUDA index as text; None: its setting
    reason: str

    @property
    def label(self) -> str:
        """How logs and fallbacks name it: backend/device for named devices."""
        if self.device and not is_decimal(self.device):
            return f"{self.backend}/{self.device}"
        return self.backend


def forced(backend: BackendConfig) -> bool:
    """A backend or device named in the config is used as is: its failure is fatal."""
    return not isinstance(backend, AutoBackend) or backend.device is not None


def candidates(backend: BackendConfig, report: HardwareReport) -> list[Candidate]:
    """Backends to try in order: the first that loads the model is used."""
    if isinstance(backend, AutoBackend):
        if backend.device is not None:
            chosen = next(b for b in registry.backends() if b.takes_auto_device)
            return [Candidate(chosen.name, backend.device,
                              f"backend: auto with device {backend.device} set in the config: "
                              f"{chosen.title} on that device")]
        found: list[Candidate] = []
        for declared in registry.backends():
            found += _auto_candidates(declared, report)
        return found
    declared = registry.get(backend.type)
    device = getattr(backend, "device", None)
    where = "" if device is None else (
        f" on CUDA device {device}" if isinstance(device, int) else f" on {device}")
    return [Candidate(declared.name, None if device is None else str(device),
                      f"backend: {declared.name}{where} set in the config")]


def _auto_candidates(declared: Backend, report: HardwareReport) -> list[Candidate]:
    """What `auto` tries of one backend here, in the order of the hardware it wants."""
    status = report.runtimes.status(declared.name)
    found: list[Candidate] = []
    for kind in declared.hardware:
        if kind == "nvidia" and report.nvidia and status.usable:
            found.append(Candidate(declared.name, None, f"auto: NVIDIA hardware "
                                   f"({report.nvidia}) with {status.summary}"))
        elif kind in INTEL_KINDS:
            prefix, _ = INTEL_KINDS[kind]
            devices = report.intel_gpus if prefix == "GPU" else report.intel_npus
            if not devices:
                continue
            nodes = ", ".join(f"{dev.node} ({dev.driver or 'no driver'})" for dev in devices)
            found += [Candidate(declared.name, name, f"auto: Intel {prefix} {nodes} listed by "
                                f"{declared.title} as {name}")
                      for name in status.devices if name.split(".")[0] == prefix]
        elif kind == "cpu" and (status.usable or declared.required):
            found.append(_cpu_candidate(declared, status))
    return found


def _cpu_candidate(declared: Backend, status: RuntimeStatus) -> Candidate:
    if declared.required:
        return Candidate(declared.name, "CPU",
                         f"auto: {declared.title} on CPU, which is always there")
    device = "CPU" if "device" in declared.config.model_fields else None
    return Candidate(declared.name, device, f"auto: {declared.title} on CPU ({status.summary})")


def passed_over(backend: BackendConfig, report: HardwareReport) -> list[str]:
    """Accelerators that are present but not tried because their runtime is missing.

    These make a boot degraded just like a backend that failed to load: an Orin that
    runs on its CPU because tensorrt does not import must say so.
    """
    if forced(backend):
        return []
    notes = []
    for declared in registry.backends():
        status = report.runtimes.status(declared.name)
        for kind in declared.hardware:
            if kind == "nvidia" and report.nvidia and not status.usable:
                notes.append(f"{declared.name}: NVIDIA GPU found ({report.nvidia}) but "
                             f"{status.problem}; {INSTALL_HINT}")
            elif kind in INTEL_KINDS:
                prefix, package = INTEL_KINDS[kind]
                devices = report.intel_gpus if prefix == "GPU" else report.intel_npus
                listed = {name.split(".")[0] for name in status.devices}
                if devices and prefix not in listed:
                    why = (status.problem if not status.usable
                           else f"{declared.title} does not list {prefix}")
                    notes.append(f"{declared.name}/{prefix}: Intel {prefix} {devices[0].node} "
                                 f"found but {why}; install {package}, {INSTALL_HINT}")
    return notes
