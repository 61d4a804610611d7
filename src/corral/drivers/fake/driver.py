"""The fake driver: real files, real processes for exec, no guest.

State lives in ``<instance dir>/fake.json`` so that a fresh driver object (as after a daemon
restart) sees exactly what the previous one left, as the real drivers do. ``exec`` runs the
command on the host in the instance's directory (through ``host.run``, as every command;
``env --chdir`` puts it there): enough to prove exit codes, output and timeouts flow through
every layer unchanged.

A fake VM has a guest agent that is connected from the start, unless ``fake-agent-booting``
exists in its directory: then it plays a guest still booting (status says the agent is
"waiting" and exec waits) until the file is gone. Tests make and remove that file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from corral.domain.errors import Conflict, HostFailure, InvalidInput
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import (
    AppliedChange,
    Capabilities,
    ExecResult,
    Hooks,
    InstanceStats,
    Progress,
    RuntimeState,
    RuntimeStatus,
)
from corral.drivers.fake import resources as fake_resources
from corral.drivers.fake.nics import FakeNics, nics_path
from corral.host.run import CommandTimedOut, run
from corral.templates.image import TemplateImage

READY_MARKER = b"corral-guest-ready\n"
AGENT_BOOTING = "fake-agent-booting"
AGENT_WAIT = 60.0  # seconds an exec without a timeout waits for a booting fake agent


class FakeConsole:
    """An echoing console: what is written comes back and lands in the console log."""

    def __init__(self, log_path: Path) -> None:
        self._ours, self._theirs = socket.socketpair()
        self._log = log_path

    def fileno(self) -> int:
        return self._ours.fileno()

    def read(self, size: int) -> bytes:
        return self._ours.recv(size)

    def write(self, data: bytes) -> None:
        with self._log.open("ab") as log:
            log.write(data)
        self._theirs.sendall(data)

    def close(self) -> None:
        self._ours.close()
        self._theirs.close()


class FakeDriver:
    def __init__(self, kind: Kind) -> None:
        self._kind = kind
        self._seen: dict[str, tuple[tuple[int, int, int, bool], RuntimeStatus]] = {}
        self._hooks: Hooks | None = None

    @property
    def kind(self) -> Kind:
        return self._kind

    def capabilities(self) -> Capabilities:
        return Capabilities(kind=self._kind, unprivileged=True, guest_os=False, snapshots=True,
                            nic_hotplug=True, notes=("fake: no guest runs",))

    def hooks(self) -> Hooks:
        if self._hooks is None:
            from corral.drivers.fake.migration import FakeMigration
            from corral.drivers.fake.snapshots import FakeSnapshots  # it imports this module

            self._hooks = Hooks(snapshots=FakeSnapshots(self), nics=FakeNics(self),
                                migration=FakeMigration(self._kind))
        return self._hooks

    # Files ----------------------------------------------------------------------------
    def _state_file(self, spec: InstanceSpec) -> Path:
        return spec.directory / "fake.json"

    def _load(self, spec: InstanceSpec) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._state_file(spec).read_text())
            return data
        except FileNotFoundError:
            return {}

    def _save(self, spec: InstanceSpec, state: RuntimeState) -> None:
        path = self._state_file(spec)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"state": state.value}))
        tmp.replace(path)

    def _log_path(self, spec: InstanceSpec) -> Path:
        return spec.directory / "console.log"

    def _require(self, spec: InstanceSpec, *states: RuntimeState) -> RuntimeState:
        current = self.status(spec).state
        if current not in states:
            raise Conflict(f"{spec.name} is {current.value}")
        return current

    # Protocol -------------------------------------------------------------------------
    def create(self, spec: InstanceSpec, template: TemplateImage, progress: Progress) -> None:
        if spec.resources.disk > 64 * 1024**4:
            raise InvalidInput("disk larger than 64T is not supported by the fake pool")
        if spec.root_disk is None:  # else storage made it in a pool
            progress(0.5, "writing disk")
            with spec.disk_path.open("wb") as disk:
                disk.truncate(spec.resources.disk)
        self._save(spec, RuntimeState.STOPPED)
        progress(1.0, "created")

    def start(self, spec: InstanceSpec, template: TemplateImage) -> None:
        self._require(spec, RuntimeState.STOPPED)
        with self._log_path(spec).open("ab") as log:
            log.write(b"fake boot of " + spec.name.encode() + b"\n" + READY_MARKER)
        fake_resources.started(spec)
        self._save(spec, RuntimeState.RUNNING)

    def stop(self, spec: InstanceSpec, *, force: bool, timeout: float) -> None:
        self._require(spec, RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        self._save(spec, RuntimeState.STOPPED)

    def suspend(self, spec: InstanceSpec) -> None:
        self._require(spec, RuntimeState.RUNNING)
        self._save(spec, RuntimeState.SUSPENDED)

    def resume(self, spec: InstanceSpec) -> None:
        self._require(spec, RuntimeState.SUSPENDED)
        self._save(spec, RuntimeState.RUNNING)

    def delete(self, spec: InstanceSpec) -> None:
        if self.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            raise Conflict(f"{spec.name} is running")
        owned = [spec.disk_path] if spec.root_disk is None else []  # pool disks: storage's
        for path in (self._state_file(spec), *owned, self._log_path(spec),
                     nics_path(spec), fake_resources.live_path(spec)):
            path.unlink(missing_ok=True)

    def status(self, spec: InstanceSpec) -> RuntimeStatus:
        state = self._load(spec).get("state")
        if state is None:
            return RuntimeStatus(RuntimeState.MISSING)
        pid = os.getpid() if state != RuntimeState.STOPPED.value else None
        details = {}
        if self._kind is Kind.VM and pid is not None:
            booting = (spec.directory / AGENT_BOOTING).exists()
            details["agent"] = "waiting" if booting else "connected"
        return RuntimeStatus(RuntimeState(state), pid=pid, details=details)

    def _wait_for_agent(self, spec: InstanceSpec, timeout: float | None) -> None:
        deadline = time.monotonic() + (AGENT_WAIT if timeout is None else timeout)
        while (spec.directory / AGENT_BOOTING).exists():
            if time.monotonic() > deadline:
                raise HostFailure("the guest agent did not answer (fake VM still booting)")
            time.sleep(0.05)

    def statuses(self, specs: Sequence[InstanceSpec]) -> dict[int, RuntimeStatus]:
        # As the real drivers: unchanged state files (inode, size, mtime) are not read again,
        # so ``list`` of many measures the API, not this driver's file parsing.
        found, memo = {}, self._seen
        if len(memo) > 2 * len(specs) + 256:
            memo.clear()
        for spec in specs:
            path = f"{spec.directory}/fake.json"
            try:
                st = os.stat(path)
            except FileNotFoundError:
                found[spec.id] = RuntimeStatus(RuntimeState.MISSING)
                continue
            booting = self._kind is Kind.VM and os.path.exists(
                f"{spec.directory}/{AGENT_BOOTING}")
            key = (st.st_ino, st.st_size, st.st_mtime_ns, booting)
            seen = memo.get(path)
            if seen is None or seen[0] != key:
                seen = memo[path] = (key, self.status(spec))
            found[spec.id] = seen[1]
        return found

    def exec(
        self, spec: InstanceSpec, argv: list[str], timeout: float | None, stdin: bytes = b""
    ) -> ExecResult:
        self._require(spec, RuntimeState.RUNNING)
        if not argv or not _runnable(argv[0], spec.directory):
            return ExecResult(127, b"", f"{argv[0] if argv else ''}: not found\n".encode())
        if self._kind is Kind.VM:
            self._wait_for_agent(spec, timeout)
        try:
            proc = run(["env", f"--chdir={spec.directory}", "--", *argv], check=False,
                       timeout=timeout, input=stdin)
        except CommandTimedOut:
            raise HostFailure(f"command did not finish within {timeout} s") from None
        return ExecResult(proc.returncode, proc.stdout, proc.stderr)

    def open_console(self, spec: InstanceSpec) -> FakeConsole:
        self._require(spec, RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        return FakeConsole(self._log_path(spec))

    def console_log(self, spec: InstanceSpec, limit: int = 65536) -> bytes:
        try:
            data = self._log_path(spec).read_bytes()
        except FileNotFoundError:
            return b""
        return data[-limit:]

    # Resources: live values beside the state file, the disk file really grows --------
    def apply_resources(
        self, spec: InstanceSpec, old: Resources, new: Resources
    ) -> AppliedChange:
        running = self.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        return fake_resources.apply(spec, old, new, running)

    def stats(self, spec: InstanceSpec) -> InstanceStats:
        running = self.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        return fake_resources.stats(spec, running)

    def stats_many(self, specs: Sequence[InstanceSpec]) -> dict[int, InstanceStats]:
        return {spec.id: self.stats(spec) for spec in specs}

    def adopted(self, spec: InstanceSpec) -> None:
        del spec  # nothing a start leaves half-done

    def cpu_times(self, specs: Sequence[InstanceSpec]) -> dict[int, int]:
        up = (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        return {i: 0 for i, s in self.statuses(specs).items() if s.state in up}


def _runnable(command: str, cwd: Path) -> bool:
    """Whether ``command`` names an executable (on PATH, or a path from ``cwd``)."""
    if "/" in command:
        path = cwd / command
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(command) is not None
