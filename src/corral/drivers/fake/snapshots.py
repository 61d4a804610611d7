"""Snapshot hooks of the fake driver: the disk file is cloned, "memory" is its state file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.fake.driver import FakeDriver
from corral.drivers.snapshots import Captured, MemoryNotRestored, clone, replace_disk
from corral.templates.image import TemplateImage

STATE = "state.json"


class FakeSnapshots:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        return None

    def take(self, spec: InstanceSpec, dest: Path, memory: bool) -> Captured:
        method = clone(spec.disk_path, dest / "root.img")
        if memory:
            state = self.driver.status(spec).state
            if state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                raise Conflict(f"{spec.name} is {state.value}: a memory snapshot needs it running")
            shutil.copyfile(spec.directory / "fake.json", dest / STATE)
        return Captured("memory and disk" if memory else "disk", method)

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool
    ) -> None:
        if self.driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.driver.stop(spec, force=True, timeout=0)
        replace_disk(spec, source / "root.img")
        if memory:
            try:
                json.loads((source / STATE).read_text())  # "loading" the state
            except (OSError, ValueError) as exc:
                self.driver.start(spec, template)  # as QEMU's: a cold boot of the disk
                raise MemoryNotRestored(
                    f"the memory state could not be restored ({exc}); {spec.name} was "
                    "started from the snapshot's disk (a cold boot)") from exc
            shutil.copyfile(source / STATE, spec.directory / "fake.json")

    def capture_disk(self, spec: InstanceSpec, dest: Path, since: str | None = None) -> Captured:
        return Captured("crash-consistent copy (fake driver)", clone(spec.disk_path, dest))

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        """No change tracking: incrementals are found by chunk hash."""
