"""Migration hooks: what a driver adds so its instances can move between hosts.

Kept apart from the ``Driver`` Protocol (drivers/base.py), like ``SnapshotHooks``: every
driver (fake, lxc, qemu) has a ``migration.py`` implementing ``MigrationHooks`` and hands it
out as ``Hooks.migration``; the migration service (services/migration/) calls only these,
never a driver class.

Which ways an instance can move is data (``MigrationHooks.paths``):

- ``offline``: a stopped instance's disks and files are copied; every driver has it.
- ``precopy``: a running instance's disks are pre-copied while it runs, it is stopped, the
  final delta follows and the target starts it (its processes restart; no RAM moves).
- ``live``: disks mirrored and RAM pre-copied while it runs; the guest resumes on the target
  where it stopped (QEMU). ``live_source`` / ``start_incoming`` / ``finish_incoming`` exist
  for drivers that have it.
- ``checkpoint``: ``precopy`` whose stop is a checkpoint of the processes (CRIU: frozen,
  dumped, stopped) and whose start on the target is their restore: processes and established
  TCP connections carry on (LXC). ``checkpoint_refusal`` says per instance why not (then
  ``precopy``); ``checkpoint`` / ``restore`` exist for drivers that have it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from corral.domain.errors import Unsupported
from corral.domain.instance import InstanceSpec
from corral.templates.image import TemplateImage

if TYPE_CHECKING:
    from corral.drivers.base import Driver


class MigrationPath(StrEnum):
    LIVE = "live"
    CHECKPOINT = "checkpoint"
    PRECOPY = "precopy"
    OFFLINE = "offline"


CHECKPOINT_DIR = "checkpoint"
DUMP_COMPLETE = "corral-dump.complete"
"""Written into a checkpoint's directory once its dump succeeded (``dump_complete``)."""
"""Where a ``checkpoint`` move keeps the dump in the instance's directory (sent with its
files, removed once restored)."""


Report = Callable[[float, str], None]
"""Fraction of the current step and a phase text; may raise (a cancel)."""


@dataclass(frozen=True)
class StreamTls:
    """TLS for the runtime's own streams (QEMU's NBD mirror and RAM stream): this host's
    identity and the peer's pinned certificate, which is the only certificate accepted;
    ``peer_name``: the host name in that certificate (checked instead of the address)."""

    own_cert: Path
    own_key: Path
    peer_cert_pem: str
    peer_name: str


@dataclass(frozen=True)
class LiveOffer:
    """What the source's runtime tells the target so its incoming side matches (the RAM
    layout, the disks the running guest has)."""

    boot_memory: int | None = None
    disks: Sequence[str] | None = None  # data disks the running guest has; None: all
    tls: StreamTls | None = None  # set by the migration service on either side


@dataclass(frozen=True)
class LiveEndpoints:
    """Where the target's incoming side listens: disks by name (``root`` first) as NBD
    exports on one server, and the RAM stream."""

    nbd_host: str
    nbd_port: int
    exports: Mapping[str, str]
    migrate_uri: str


@dataclass
class LiveStats:
    stopped_at: float = 0.0  # wall clock at which the source guest stopped (0: unknown)
    runtime_downtime_ms: int | None = None  # as the runtime measured it
    disk_bytes: int = 0
    ram_bytes: int = 0
    log: list[str] = field(default_factory=list)


class LiveSource(Protocol):
    """The running source of a live move; ``rollback`` undoes any phase before the commit."""

    def mirror(self, ends: LiveEndpoints, bandwidth: int | None, report: Report) -> None:
        """Start mirroring every disk into the target; return once all are in sync."""
        ...

    def migrate(self, ends: LiveEndpoints, bandwidth: int | None, downtime_ms: int,
                report: Report) -> None:
        """Move the RAM; returns with the source guest stopped and the target complete."""
        ...

    def release_disk(self) -> None:
        """After the switch-over: let go of the target's disks (no pivot)."""
        ...

    def rollback(self, resume: bool) -> list[str]:
        """Undo every step; ``resume``: run the guest here again. Returns the problems."""
        ...

    def stats(self) -> LiveStats: ...

    def close(self) -> None: ...


class MigrationHooks(Protocol):
    @property
    def paths(self) -> frozenset[MigrationPath]:
        """The ways this driver's instances can move (always ``offline``)."""
        ...

    def why(self, path: MigrationPath) -> str:
        """Why a running instance takes ``path`` here (shown in the migration record)."""
        ...

    # -- source ----------------------------------------------------------------------------
    def idmap_start(self, spec: InstanceSpec) -> int | None:
        """The host uid the instance's files are shifted to (the target must map root to
        the same), or None where files are not shifted."""
        ...

    def live_offer(self, spec: InstanceSpec) -> LiveOffer:
        """What the target's incoming side must match (``live`` only)."""
        ...

    def live_source(self, spec: InstanceSpec, offer: LiveOffer) -> LiveSource:
        """Take hold of the running instance to move it live (``live`` only)."""
        ...

    def recover_source(self, spec: InstanceSpec, resume: bool) -> list[str]:
        """After a restart of corrald: undo what a live move left in the runtime (``live``
        only); returns the problems."""
        ...

    def checkpoint_refusal(self, spec: InstanceSpec) -> str | None:
        """None when the running ``spec`` can move by ``checkpoint``, else why not."""
        ...

    def checkpoint(self, spec: InstanceSpec, directory: Path, *, stop: bool) -> None:
        """Dump the running instance's processes into ``directory``; ``stop``: it is stopped
        once dumped (else it runs on: a trial)."""
        ...

    def before_checkpoint(self, spec: InstanceSpec) -> None:
        """Right before a stopping ``checkpoint``, while the instance still runs: what can
        be done outside the downtime (undone by the ``checkpoint`` if that fails)."""
        ...

    def dumped_recently(self, spec: InstanceSpec) -> bool:
        """A trial ``checkpoint`` of this same run and configuration of ``spec`` succeeded
        a short while ago (the migration skips its own trial)."""
        ...

    def settle(self, spec: InstanceSpec) -> None:
        """After a stopping ``checkpoint``: wait until the instance has let go of its disks
        (their images consistent on the host). The migration sends the dump meanwhile."""
        ...

    def quiesce(self, spec: InstanceSpec) -> tuple[str, dict[str, float]]:
        """After a stopping ``checkpoint``, in the downtime: the instance's disk images whole
        and left alone on the host, so the final delta can be read, without waiting for
        ``settle`` where the driver can; how it was done and its phases (ms), said in the
        migration record."""
        ...

    def restore(self, spec: InstanceSpec, template: TemplateImage, directory: Path) -> float:
        """Run the stopped instance from the dump in ``directory``; the wall clock it ran."""
        ...

    # -- target ----------------------------------------------------------------------------
    def check_arrival(self, idmap_start: int | None, privileged: bool) -> None:
        """Refuse (``Conflict``) an instance this host cannot run as it is (its files
        shifted to another uid than this host maps root to)."""
        ...

    def start_incoming(self, spec: InstanceSpec, template: TemplateImage, listen_host: str,
                       offer: LiveOffer) -> LiveEndpoints:
        """Start the paused, waiting runtime of an arriving live instance (``live`` only)."""
        ...

    def finish_incoming(self, spec: InstanceSpec, offer: LiveOffer) -> float:
        """The live move is complete: run the guest here. Returns the wall clock it ran."""
        ...

    def after_resume(self, spec: InstanceSpec) -> None:
        """Once the guest runs here (outside the downtime): settings the runtime re-applies
        (IO limits, balloon). A failure is only reported."""
        ...

    def adopt(self, spec: InstanceSpec, template: TemplateImage) -> None:
        """Make the runtime know an instance whose disk and files arrived by copy."""
        ...


def dump_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a whole checkpoint (the dump returned success and the
    driver wrote ``DUMP_COMPLETE`` last): a corrald restarted mid-move restores from it
    rather than start the instance from its disk (its processes lost)."""
    return (directory / DUMP_COMPLETE).is_file()


def criu_seconds(directory: Path, verb: str) -> float | None:
    """CRIU's own time for ``verb`` (dump, restore) of the checkpoint in ``directory``: the
    last timestamp of its log (``(00.409225) …``), or None without one."""
    try:
        text = (directory / f"{verb}.log").read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"^\s*\((\d+\.\d+)\)", text, re.MULTILINE)
    return float(found[-1]) if found else None


class PhaseClock:
    """Where a checkpoint's or a restore's time goes: ``mark(name)`` ends the phase begun at
    the previous mark; ``save`` leaves the phases (ms) in the images directory, where the
    migration (which sends that directory) reads them (``read_phases``)."""

    def __init__(self) -> None:
        self._at = time.monotonic()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(self.phases.get(name, 0.0) + (now - self._at) * 1000, 1)
        self._at = now

    def save(self, directory: Path, verb: str) -> None:
        with contextlib.suppress(OSError):
            (directory / f"corral-phases-{verb}.json").write_text(json.dumps(self.phases))


def read_phases(directory: Path, verb: str) -> dict[str, float]:
    """The phases (ms) a ``PhaseClock`` saved for ``verb`` in ``directory`` ({} if none)."""
    try:
        found = json.loads((directory / f"corral-phases-{verb}.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


def migration_hooks(driver: Driver) -> MigrationHooks:
    """The migration hooks of ``driver`` (``Hooks.migration``)."""
    found = driver.hooks().migration
    if found is None:
        raise Unsupported(f"this host's {driver.kind.value} driver cannot move instances")
    return found


def without_criu(reason: str) -> str:
    """The ``precopy`` reason of a container: its processes are not checkpointed."""
    return (f"pre-copied restart ({reason}): disk pre-copied while running, then stop, "
            "final delta sync, start on the target")


class CopyOnly:
    """The hooks of a driver whose instances move by copy (``offline``, ``precopy``): no
    live side, no shifted files, nothing to adopt. Drivers extend it where they differ."""

    paths = frozenset({MigrationPath.PRECOPY, MigrationPath.OFFLINE})
    no_live = "this driver cannot move a running instance's memory"

    def why(self, path: MigrationPath) -> str:
        if path is MigrationPath.PRECOPY:
            return "this driver cannot move RAM: disk pre-copy, stop, delta, start"
        return f"{path.value} migration"

    def idmap_start(self, spec: InstanceSpec) -> int | None:
        del spec
        return None

    def live_offer(self, spec: InstanceSpec) -> LiveOffer:
        raise Unsupported(self.no_live)

    def live_source(self, spec: InstanceSpec, offer: LiveOffer) -> LiveSource:
        raise Unsupported(self.no_live)

    def recover_source(self, spec: InstanceSpec, resume: bool) -> list[str]:
        del spec, resume
        return []

    def checkpoint_refusal(self, spec: InstanceSpec) -> str | None:
        del spec
        return "this driver cannot checkpoint processes"

    def checkpoint(self, spec: InstanceSpec, directory: Path, *, stop: bool) -> None:
        raise Unsupported("this driver cannot checkpoint processes")

    def before_checkpoint(self, spec: InstanceSpec) -> None:
        del spec

    def dumped_recently(self, spec: InstanceSpec) -> bool:
        del spec
        return False

    def settle(self, spec: InstanceSpec) -> None:
        del spec

    def quiesce(self, spec: InstanceSpec) -> tuple[str, dict[str, float]]:
        self.settle(spec)
        return "released", {}

    def restore(self, spec: InstanceSpec, template: TemplateImage, directory: Path) -> float:
        raise Unsupported("this driver cannot checkpoint processes")

    def check_arrival(self, idmap_start: int | None, privileged: bool) -> None:
        del idmap_start, privileged

    def start_incoming(self, spec: InstanceSpec, template: TemplateImage, listen_host: str,
                       offer: LiveOffer) -> LiveEndpoints:
        raise Unsupported(self.no_live)

    def finish_incoming(self, spec: InstanceSpec, offer: LiveOffer) -> float:
        raise Unsupported(self.no_live)

    def after_resume(self, spec: InstanceSpec) -> None:
        del spec

    def adopt(self, spec: InstanceSpec, template: TemplateImage) -> None:
        del spec, template
