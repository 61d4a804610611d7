"""Host facts for `corral host info`: resources, kernel features, chosen accelerators."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import socket
from pathlib import Path
from typing import Any

from corral.host.features import probe_all

log = logging.getLogger("corral.host")


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _optional(module: str, func: str) -> Any:
    """Facts from host modules that may be absent on a minimal install; an error is a fact."""
    try:
        return getattr(importlib.import_module(module), func)()
    except Exception as exc:
        log.warning("%s.%s failed: %s", module, func, exc)
        return {"error": str(exc)}


class HostService:
    def __init__(self, state_dir: Path, node: str, driver_mode: str) -> None:
        self.state_dir = state_dir
        self.node = node
        self.driver_mode = driver_mode
        self._features: dict[str, Any] | None = None

    def features(self) -> dict[str, Any]:
        if self._features is None:
            found: dict[str, Any] = {k: v.to_dict() for k, v in probe_all().items()}
            found["cgroups"] = _optional("corral.host.cgroups", "describe")
            found["vm_accelerator"] = _optional("corral.host.kvm", "describe")
            found["drivers"] = self.driver_mode
            self._features = found
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
