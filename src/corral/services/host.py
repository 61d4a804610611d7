"""Host facts for `corral host info`: resources, kernel features, chosen accelerators."""

from __future__ import annotations

import logging
import os
import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.host.cgroups import read_layout
from corral.host.features import probe_all
from corral.host.kvm import choose_accel
from corral.host.netfeatures import probe_network

log = logging.getLogger("corral.host")


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _cgroups() -> dict[str, Any]:
    layout = read_layout()
    return {"version": layout.version.value, "controllers": layout.controllers()}


def _accelerator(kernel: Path | None) -> dict[str, Any]:
    if kernel is None or not kernel.exists():
        return {"accel": "unknown", "reason": "no template kernel to probe with yet"}
    choice = choose_accel(kernel)
    return {"accel": choice.accel, "reason": choice.reason}


class HostService:
    def __init__(
        self, state_dir: Path, node: str, driver_mode: str,
        probe_kernel: Callable[[], Path | None] = lambda: None,
    ) -> None:
        self.state_dir = state_dir
        self.probe_kernel = probe_kernel
        self.node = node
        self.driver_mode = driver_mode
        self._features: dict[str, Any] | None = None

    def features(self) -> dict[str, Any]:
        if self._features is None:
            found: dict[str, Any] = {k: v.to_dict() for k, v in probe_all().items()}
            found.update({k: v.to_dict() for k, v in probe_network().items()})
            found["cgroups"] = _cgroups()
            found["drivers"] = self.driver_mode
            self._features = found
        if "vm_accelerator" not in self._features:
            if self.driver_mode == "fake":
                accel = {"accel": "none", "reason": "fake drivers: no VM runs"}
            else:
                accel = _accelerator(self.probe_kernel())
            if accel["accel"] != "unknown":  # probe again later once a kernel exists
                self._features["vm_accelerator"] = accel
            return {**self._features, "vm_accelerator": accel}
        return self._features

    def info(self) -> dict[str, Any]:
        return {
            "hostname": socket.gethostname(),
            "node": self.node,
            "kernel": platform.release(),
            "cpus": os.cpu_count() or 1,
            "memory": _memory_bytes(),
            "state_dir": str(self.state_dir),
            "features": self.features(),
        }
