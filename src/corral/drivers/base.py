"""The one small Protocol every driver implements, and what it reports back.

A driver is stateless towards the daemon: everything it needs to find a running guest again
(pid files, sockets, LXC state) lives under ``InstanceSpec.directory`` or the runtime itself,
so a restarted daemon re-adopts guests by asking ``status``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from corral.domain.instance import InstanceSpec, Kind
from corral.templates.image import TemplateImage

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
    notes: tuple[str, ...] = ()


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


class ConsoleStream(Protocol):
    """A bidirectional byte stream to the guest's console."""

    def fileno(self) -> int: ...

    def read(self, size: int) -> bytes:
        """Bytes available now (blocks until some arrive); b'' when the console closed."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Driver(Protocol):
    @property
    def kind(self) -> Kind: ...

    def capabilities(self) -> Capabilities: ...

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

    def exec(
        self, spec: InstanceSpec, argv: list[str], timeout: float | None, stdin: bytes = b""
    ) -> ExecResult: ...

    def open_console(self, spec: InstanceSpec) -> ConsoleStream: ...

    def console_log(self, spec: InstanceSpec, limit: int = 65536) -> bytes:
        """The last ``limit`` bytes the guest wrote to its console."""
        ...
