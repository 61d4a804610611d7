"""The one small Protocol every driver implements, and what it reports back.

A driver is stateless towards the daemon: everything it needs to find a running guest again
(pid files, sockets, LXC state) lives under ``InstanceSpec.directory`` or the runtime itself,
so a restarted daemon re-adopts guests by asking ``status``.

What a driver can do beyond the core is said twice, on purpose: as data (``Capabilities``,
for services to consult and for ``host info``) and as hook objects (``Hooks``: one object
behind its own Protocol per optional part, e.g. ``SnapshotHooks``, ``NicHotplug``,
``MigrationHooks``), which
services call. No service looks at a driver's class; the contract suite checks that both
say the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.templates.image import TemplateImage

if TYPE_CHECKING:
    from corral.drivers.migration import MigrationHooks
    from corral.drivers.nics import NicHotplug
    from corral.drivers.snapshots import SnapshotHooks

Progress = Callable[[float, str], None]
"""Report progress: fraction done (0..1) and a short phase description."""


class RuntimeState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    SUSPENDED = "suspended"
    MISSING = "missing"  # the runtime has no trace of the instance at all


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, as data: services consult it before asking."""

    kind: Kind
    live_suspend: bool = True
    exec: bool = True
    console: bool = True
    graceful_stop: bool = True
    unprivileged: bool = False
    guest_os: bool = True  # a guest OS runs: exec sees its own disk, devices and limits
    snapshots: bool = False  # ``Hooks.snapshots``: snapshots and online backups
    nic_hotplug: bool = False  # ``Hooks.nics``: NICs added to / removed from a running guest
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hooks:
    """The optional parts of a driver, each an object behind its own Protocol; None where
    the driver has no such part (its ``Capabilities`` say the same)."""

    snapshots: SnapshotHooks | None = None
    nics: NicHotplug | None = None
    migration: MigrationHooks | None = None  # its ``paths`` say which ways instances move


@dataclass(frozen=True)
class RuntimeStatus:
    state: RuntimeState
    pid: int | None = None
    addresses: tuple[str, ...] = ()
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Applied(StrEnum):
    LIVE = "live"  # in effect now, on the running instance
    NEXT_START = "next start"  # persisted; the runtime takes it when the instance next starts
    NOT_APPLICABLE = "not applicable"  # this kind has no such limit (said in ``note``)


@dataclass(frozen=True)
class KeyChange:
    key: str
    applied: Applied
    note: str = ""


@dataclass(frozen=True)
class AppliedChange:
    """What ``apply_resources`` did with each changed key."""

    changes: tuple[KeyChange, ...] = ()

    def of(self, key: str) -> KeyChange | None:
        return next((c for c in self.changes if c.key == key), None)


@dataclass(frozen=True)
class InstanceStats:
    """Usage counters of one instance; cumulative counters only (rates are the caller's)."""

    running: bool
    cpu_ns: int = 0  # CPU time used (a VM: its QEMU process)
    vcpus: int = 0  # CPUs the guest has online (a CT: CPUs it may run on)
    memory_used: int = 0
    memory_total: int = 0  # CT: its limit; VM: guest RAM after the balloon
    disk_used: int = 0  # bytes allocated to the root image on the host
    disk_size: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    io_read_ops: int = 0
    io_write_ops: int = 0
    pids: int = 0
    oom_kills: int = 0


def root_disk_usage(spec: InstanceSpec) -> tuple[int, int]:
    """(bytes allocated on the host, apparent size) of the instance's root image, for
    ``InstanceStats``; (0, 0) once the image is gone (every driver answers alike)."""
    try:
        st = os.stat(spec.disk_path)
    except FileNotFoundError:
        return 0, 0
    return st.st_blocks * 512, st.st_size


class ConsoleStream(Protocol):
    """A bidirectional byte stream to the guest's console."""

    def fileno(self) -> int: ...

    def read(self, size: int) -> bytes:
        """Bytes available now (blocks until some arrive); b'' when the console closed."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class ResizableConsole(Protocol):
    """A console stream whose guest terminal has a window size (a container's pty); a
    serial line (a VM's) carries none."""

    def resize(self, cols: int, rows: int) -> None: ...


class Driver(Protocol):
    @property
    def kind(self) -> Kind: ...

    def capabilities(self) -> Capabilities: ...

    def hooks(self) -> Hooks:
        """This driver's optional parts (made once; cheap to ask again)."""
        ...

    def create(self, spec: InstanceSpec, template: TemplateImage, progress: Progress) -> None:
        """Prepare disk and configuration. On failure, leave nothing behind."""
        ...

    def start(self, spec: InstanceSpec, template: TemplateImage) -> None:
        """Boot the guest; return once the runtime reports it running."""
        ...

    def stop(self, spec: InstanceSpec, *, force: bool, timeout: float) -> None:
        """Graceful shutdown within ``timeout`` seconds, then forced; ``force`` skips grace."""
        ...

    def suspend(self, spec: InstanceSpec) -> None: ...

    def resume(self, spec: InstanceSpec) -> None: ...

    def delete(self, spec: InstanceSpec) -> None:
        """Remove everything the driver made for the instance; it must be stopped."""
        ...

    def status(self, spec: InstanceSpec) -> RuntimeStatus: ...

    def statuses(self, specs: Sequence[InstanceSpec]) -> dict[int, RuntimeStatus]:
        """``status`` of many instances by id, read from files and the driver's open
        sessions: no process per instance and no wait on a guest (``list`` of a thousand
        asks this). An instance whose state cannot be read is left out."""
        ...

    def exec(
        self, spec: InstanceSpec, argv: list[str], timeout: float | None, stdin: bytes = b""
    ) -> ExecResult: ...

    def open_console(self, spec: InstanceSpec) -> ConsoleStream: ...

    def console_log(self, spec: InstanceSpec, limit: int = 65536) -> bytes:
        """The last ``limit`` bytes the guest wrote to its console."""
        ...

    def apply_resources(
        self, spec: InstanceSpec, old: Resources, new: Resources
    ) -> AppliedChange:
        """Make a changed resource set take effect: live where the runtime allows, else at
        the next start (``spec.resources`` is ``new``, already validated and persisted by the
        caller). Says per changed key which it was."""
        ...

    def stats(self, spec: InstanceSpec) -> InstanceStats:
        """Usage counters now (``running=False`` and disk figures only when stopped)."""
        ...

    def stats_many(self, specs: Sequence[InstanceSpec]) -> dict[int, InstanceStats]:
        """``stats`` of many instances by id in one pass, without a process per instance
        (``top``, ``stats`` and ``/metrics`` of all); one that cannot be read is left out."""
        ...

    def adopted(self, spec: InstanceSpec) -> None:
        """A running instance found at daemon start: undo what a start the daemon died in
        leaves behind (a VM's launch priority: its cgroup's boosted CPU weight)."""
        ...

    def cpu_times(self, specs: Sequence[InstanceSpec]) -> dict[int, int]:
        """The CPU time (ns) each running one of ``specs`` has used so far (``cpu_ns`` of
        ``stats``), one cheap read each: the first sample of a CPU % when there is no recent
        one (``stats_many`` after a pause gives the second)."""
        ...
