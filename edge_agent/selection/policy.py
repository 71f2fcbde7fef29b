"""Which backend and device to try, in order, for this config on this hardware.

Pure: it reads a HardwareReport and the backend config and touches nothing, so every
branch is tested on recorded hardware trees. `edge_agent.selection.loading` does the trying.
The policy is written down in docs/backends.md ("Selection at boot"); keep them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.model import AutoBackend, BackendConfig, OpenVinoBackend, TensorRtBackend
from edge_agent.selection.probe import HardwareReport

INSTALL_HINT = "install per docs/backends.md"


@dataclass(frozen=True)
class Candidate:
    """One backend/device to try, and why it is on the list."""

    backend: str  # registry name: tensorrt, openvino
    device: str | None  # OpenVINO device, or CUDA index as text; None: the backend's setting
    reason: str


def forced(backend: BackendConfig) -> bool:
    """A backend or device named in the config is used as is: its failure is fatal."""
    return not isinstance(backend, AutoBackend) or backend.device is not None


def candidates(backend: BackendConfig, report: HardwareReport) -> list[Candidate]:
    """Backends to try in order: the first that loads the model is used."""
    if isinstance(backend, OpenVinoBackend):
        return [Candidate("openvino", backend.device,
                          f"backend: openvino on {backend.device} set in the config")]
    if isinstance(backend, TensorRtBackend):
        return [Candidate("tensorrt", str(backend.device),
                          f"backend: tensorrt on CUDA device {backend.device} set in the config")]
    if backend.device is not None:
        return [Candidate("openvino", backend.device,
                          f"backend: auto with device {backend.device} set in the config: "
                          "OpenVINO on that device")]
    found: list[Candidate] = []
    runtimes = report.runtimes
    nvidia = report.nvidia
    if nvidia and runtimes.tensorrt_usable:
        found.append(Candidate(
            "tensorrt", None,
            f"auto: NVIDIA hardware ({nvidia}) with tensorrt {runtimes.tensorrt} "
            f"and pycuda {runtimes.pycuda}",
        ))
    listed = runtimes.openvino_devices
    for kind, devices in (("GPU", report.intel_gpus), ("NPU", report.intel_npus)):
        if not devices:
            continue
        names = [name for name in listed if name.split(".")[0] == kind]
        nodes = ", ".join(f"{dev.node} ({dev.driver or 'no driver'})" for dev in devices)
        found += [Candidate("openvino", name, f"auto: Intel {kind} {nodes} listed by OpenVINO "
                            f"as {name}") for name in names]
    found.append(Candidate("openvino", "CPU", "auto: OpenVINO on CPU, which is always there"))
    return found


def passed_over(backend: BackendConfig, report: HardwareReport) -> list[str]:
    """Accelerators that are present but not tried because their runtime is missing.

    These make a boot degraded just like a backend that failed to load: an Orin that
    runs on its CPU because tensorrt does not import must say so.
    """
    if forced(backend):
        return []
    runtimes = report.runtimes
    notes = []
    if report.nvidia and not runtimes.tensorrt_usable:
        notes.append(f"tensorrt: NVIDIA GPU found ({report.nvidia}) but "
                     f"{runtimes.tensorrt_problem()}; {INSTALL_HINT}")
    listed = {name.split(".")[0] for name in runtimes.openvino_devices}
    for kind, devices, package in (
        ("GPU", report.intel_gpus, "the Intel GPU compute runtime (intel-opencl-icd)"),
        ("NPU", report.intel_npus, "the Intel NPU driver (intel-driver-compiler-npu)"),
    ):
        if devices and kind not in listed:
            why = ("OpenVINO does not import: " + runtimes.errors.get("openvino", "?")
                   if runtimes.openvino is None else f"OpenVINO does not list {kind}")
            notes.append(f"openvino/{kind}: Intel {kind} {devices[0].node} found but {why}; "
                         f"install {package}, {INSTALL_HINT}")
    return notes
