"""Which inference runtimes import on this box, as each backend in the registry reads them.

The probe keeps no list of its own: `detect_runtimes` asks every registered backend to
read its runtime (engines/<name>_config.py), and `Runtimes.status` asks the backend to
judge what was read, so recorded boxes in tests are judged exactly as live ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engines import registry
from engines.backend import RuntimeStatus


@dataclass(frozen=True, init=False)
class Runtimes:
    """What each backend's runtime modules are here (engines.registry says which to read).

    `versions`: module label -> version (None: it does not import); `devices`: backend ->
    the devices its runtime lists; `errors`: label -> why not. Recorded boxes are written
    by keyword: `Runtimes(tensorrt="10.3.0", pycuda=..., openvino_devices=("CPU",))`.
    """

    versions: Mapping[str, str | None]
    devices: Mapping[str, tuple[str, ...]]
    errors: Mapping[str, str]

    def __init__(
        self,
        versions: Mapping[str, str | None] | None = None,
        devices: Mapping[str, tuple[str, ...]] | None = None,
        errors: Mapping[str, str] | None = None,
        **named: Any,
    ) -> None:
        found_versions, found_devices = dict(versions or {}), dict(devices or {})
        for key, value in named.items():
            if key.endswith("_devices"):
                found_devices[key.removesuffix("_devices")] = tuple(value)
            else:
                found_versions[key] = value
        object.__setattr__(self, "versions", found_versions)
        object.__setattr__(self, "devices", found_devices)
        object.__setattr__(self, "errors", dict(errors or {}))

    def __getattr__(self, name: str) -> Any:
        """`runtimes.openvino` is a version, `runtimes.openvino_devices` a device list."""
        if name.startswith("__"):
            raise AttributeError(name)
        if name.endswith("_devices"):
            return self.devices.get(name.removesuffix("_devices"), ())
        labels = {label for backend in registry.backends()
                  for label in (backend.name, *backend.modules)}
        if name in labels or name in self.versions:
            return self.versions.get(name)
        raise AttributeError(name)

    def status(self, backend: str) -> RuntimeStatus:
        """What the backend's own declaration makes of these versions."""
        declared = registry.get(backend)
        return declared.judge_runtime(self.versions, self.errors, self.devices.get(backend, ()))

    @property
    def tensorrt_usable(self) -> bool:
        return self.status("tensorrt").usable

    def tensorrt_problem(self) -> str:
        """Why TensorRT cannot run here, in one phrase ("" when it can)."""
        return self.status("tensorrt").problem

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.versions)
        body.update({f"{name}_devices": list(found) for name, found in self.devices.items()})
        body["errors"] = dict(self.errors)
        return body


def detect_runtimes() -> Runtimes:
    """Ask every backend in the registry what of its runtime imports here; never raises."""
    versions: dict[str, str | None] = {}
    devices: dict[str, tuple[str, ...]] = {}
    errors: dict[str, str] = {}
    for backend in registry.backends():
        reading = backend.read_runtime()
        versions.update(reading.versions)
        errors.update(reading.errors)
        if reading.devices is not None:
            devices[backend.name] = reading.devices
    return Runtimes(versions, devices, errors)
