"""Snapshot hooks of the fake driver: the disk files are cloned, "memory" is its state file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.fake.driver import FakeDriver
from corral.drivers.snapshots import (
    Captured,
    DiskCopy,
    MemoryNotRestored,
    clone_all,
    replace_disks,
)
from corral.templates.image import TemplateImage

STATE = "state.json"


class FakeSnapshots:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        return None

    def take(self, spec: InstanceSpec, dest: Path, memory: bool,
             copies: Sequence[DiskCopy]) -> Captured:
        if memory:
            state = self.driver.status(spec).state
            if state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                raise Conflict(f"{spec.name} is {state.value}: a memory snapshot needs it running")
        method = clone_all(copies)
        if memory:
            shutil.copyfile(spec.directory / "fake.json", dest / STATE)
        return Captured("memory and disk" if memory else "disk", method)

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool,
        copies: Sequence[DiskCopy],
    ) -> None:
        if self.driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.driver.stop(spec, force=True, timeout=0)
        replace_disks(copies)
        if memory:
            try:
                json.loads((source / STATE).read_text())  # "loading" the state
            except (OSError, ValueError) as exc:
                self.driver.start(spec, template)  # as QEMU's: a cold boot of the disk
                raise MemoryNotRestored(
                    f"the memory state could not be restored ({exc}); {spec.name} was "
                    "started from the snapshot's disk (a cold boot)") from exc
            shutil.copyfile(source / STATE, spec.directory / "fake.json")

    def capture_disks(self, spec: InstanceSpec, copies: Sequence[DiskCopy],
                      since: Mapping[str, str]) -> Captured:
        del since
        return Captured("crash-consistent copy (fake driver)", clone_all(copies))

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        """No change tracking: incrementals are found by chunk hash."""
