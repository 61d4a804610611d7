"""Over-commitment accounting: what is allocated against what the host physically has.

Allocated = the sum over every instance on this host (running or not: a stopped instance
keeps its claim) of ``cpus``, ``memory`` and ``disk`` (the root disk, plus every data disk:
``disk add`` and ``disk resize`` are admitted like a create). Physical = online CPUs,
MemTotal, and the size of the filesystem holding the instance directories. The policy is a
maximum ratio per resource (allocated / physical); a create or a set that would take a
resource above it is refused, unless it does not increase that resource. The policy lives in
``<state>/capacity-policy.json`` and is changed through the API (``corral host policy``).

The same host policy holds ``id_quarantine``: how long a deleted instance's id stays out of
use (``domain/ids.py``), in days; 0: never reused -- and ``ksm``: whether the kernel merges
identical memory pages of VMs (``host/ksm.py``; off by default: it is a host-wide kernel
setting and its scanning thread costs CPU, so the operator turns it on) -- and
``vm_launch_priority``: the factor on a starting VM's CPU weight (its cgroup's
``cpu.shares`` / ``cpu.weight``) from QEMU's exec until QEMU is up (QMP listening, vCPUs
running), then its configured weight again. Under TCG every booting guest is busy on the
CPUs; without it a bulk start's QEMUs initialise at the same weight as the guests already
booting (docs/architecture.md, "VM launch priority"). Default 16; 1: no priority.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from corral.domain.errors import Conflict, CorralError, InvalidInput
from corral.domain.ids import DEFAULT_QUARANTINE
from corral.domain.resources import Resources
from corral.domain.sizes import format_size
from corral.host import ksm
from corral.state.store import StateStore

log = logging.getLogger("corral.capacity")

RESOURCES = ("cpu", "memory", "disk")
QUARANTINE = "id_quarantine"
KSM = "ksm"
AUDIT_RETENTION = "audit_retention"
AUDIT_MAX = "audit_max_entries"
LAUNCH_PRIORITY = "vm_launch_priority"
KEYS = (*RESOURCES, QUARANTINE, KSM, AUDIT_RETENTION, AUDIT_MAX, LAUNCH_PRIORITY)
MAX_LAUNCH_PRIORITY = 256
_ON = {"on": True, "yes": True, "true": True, "1": True,
       "off": False, "no": False, "false": False, "0": False}
MAX_QUARANTINE_DAYS = 36525  # a century; 0 says "forever"
DEFAULT_LAUNCH_PRIORITY = 16  # measured: docs/architecture.md, "VM launch priority"


class OverCommitted(Conflict):
    code = "overcommitted"


@dataclass(frozen=True)
class Policy:
    """Maximum allocated/physical ratio per resource; None: no maximum."""

    cpu: float | None = 8.0
    memory: float | None = 4.0
    disk: float | None = 10.0
    id_quarantine: float = DEFAULT_QUARANTINE / timedelta(days=1)
    """Days a deleted instance's id stays out of use; 0: it is never used again."""
    ksm: bool = False
    """Whether the kernel merges identical pages of VMs' memory (KSM)."""
    audit_retention: float = 365.0
    """Days an audit log entry is kept; 0: no age limit."""
    audit_max_entries: int = 1_000_000
    """The most audit log entries kept (the oldest go first); 0: no count limit."""
    vm_launch_priority: int = DEFAULT_LAUNCH_PRIORITY
    """The factor on a starting VM's CPU weight until QEMU is up; 1: none."""

    def get(self, resource: str) -> float | None:
        value: float | None = getattr(self, resource)
        return value

    @property
    def quarantine(self) -> timedelta | None:
        """The id quarantine (None: forever)."""
        return timedelta(days=self.id_quarantine) if self.id_quarantine else None

    @property
    def audit_limits(self) -> tuple[timedelta | None, int | None]:
        """(age, count) beyond which audit entries are pruned (None: no such limit)."""
        return (timedelta(days=self.audit_retention) if self.audit_retention else None,
                self.audit_max_entries or None)


@dataclass(frozen=True)
class Amounts:
    cpu: int
    memory: int
    disk: int

    def get(self, resource: str) -> int:
        value: int = getattr(self, resource)
        return value


def amounts(res: Resources) -> Amounts:
    return Amounts(cpu=res.cpus, memory=res.memory, disk=res.disk)


def physical_amounts(instances_dir: Path) -> Amounts:
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    fs = os.statvfs(instances_dir)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Amounts(cpu=cpus or 1, memory=memory, disk=fs.f_blocks * fs.f_frsize)


def _days(raw: str, units: dict[str, float]) -> float:
    """``30d``, ``12h`` or ``30`` (days) -> days, with ``units`` (suffix -> days); -1 when
    it is not a number."""
    text = raw.strip().lower()
    unit = units.get(text[-1:])
    try:
        return float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        return -1.0


def parse_quarantine(raw: str) -> float:
    """``30d``, ``12h`` or ``30`` (days) -> days; ``0``: never reuse."""
    value = _days(raw, {"d": 1.0, "h": 1 / 24})
    if not 0 <= value <= MAX_QUARANTINE_DAYS:
        raise InvalidInput(f"{QUARANTINE} '{raw}' is not a duration of at most "
                           f"{MAX_QUARANTINE_DAYS} days (e.g. 30d, 12h; 0: never reuse an id)")
    return value


def parse_days(key: str, raw: str, hint: str) -> float:
    """``30d``, ``12h``, ``2w`` or ``30`` (days) -> days; 0 allowed."""
    value = _days(raw, {"d": 1.0, "h": 1 / 24, "w": 7.0})
    if not 0 <= value <= MAX_QUARANTINE_DAYS:
        raise InvalidInput(f"{key} '{raw}' is not a duration of at most "
                           f"{MAX_QUARANTINE_DAYS} days (e.g. 90d, 12h; {hint})")
    return value


def parse_count(key: str, raw: str, hint: str) -> int:
    text = raw.strip().replace("_", "")
    if not text.isdecimal() or len(text) > 12:
        raise InvalidInput(f"{key} '{raw}' is not a whole number of at least 0 ({hint})")
    return int(text)


def parse_policy(base: Policy, settings: dict[str, str]) -> Policy:
    changes: dict[str, float | None] = {}
    quarantine, ksm = base.id_quarantine, base.ksm
    audit_age, audit_max = base.audit_retention, base.audit_max_entries
    launch = base.vm_launch_priority
    for key, raw in settings.items():
        if key == LAUNCH_PRIORITY:
            launch = parse_count(key, raw, f"1 to {MAX_LAUNCH_PRIORITY}; 1: no priority")
            if not 1 <= launch <= MAX_LAUNCH_PRIORITY:
                raise InvalidInput(f"{key} '{raw}' is not from 1 to {MAX_LAUNCH_PRIORITY} "
                                   "(the factor on a starting VM's CPU weight; 1: none)")
            continue
        if key == QUARANTINE:
            quarantine = parse_quarantine(raw)
            continue
        if key == AUDIT_RETENTION:
            audit_age = parse_days(key, raw, "0: no age limit")
            continue
        if key == AUDIT_MAX:
            audit_max = parse_count(key, raw, "0: no count limit")
            continue
        if key == KSM:
            if raw.strip().lower() not in _ON:
                raise InvalidInput(f"ksm '{raw}' is not on or off")
            ksm = _ON[raw.strip().lower()]
            continue
        if key not in RESOURCES:
            raise InvalidInput(f"unknown policy key '{key}'; known: {', '.join(KEYS)}")
        text = raw.strip().lower().removesuffix(":1")
        if text in ("", "none", "unlimited"):
            changes[key] = None
            continue
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(f"{key} ratio '{raw}' is not a number (e.g. 4 or 1.5)") from None
        if not value > 0:
            raise InvalidInput(f"{key} ratio must be greater than 0, not {raw}")
        changes[key] = value
    return replace(base, cpu=changes.get("cpu", base.cpu),
                   memory=changes.get("memory", base.memory),
                   disk=changes.get("disk", base.disk), id_quarantine=quarantine, ksm=ksm,
                   audit_retention=audit_age, audit_max_entries=audit_max,
                   vm_launch_priority=launch)


def _show(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value:g} CPUs"
    return format_size(int(value))


def check(
    physical: Amounts, allocated: Amounts, policy: Policy, new: Resources, old: Resources | None
) -> None:
    """OverCommitted if replacing ``old`` (None: a new instance) by ``new`` takes a resource
    that grows above its policy ratio. ``allocated`` includes ``old``."""
    before = amounts(old) if old is not None else Amounts(0, 0, 0)
    check_amounts(physical, allocated, policy, before, amounts(new))


def check_amounts(
    physical: Amounts, allocated: Amounts, policy: Policy, before: Amounts, after: Amounts
) -> None:
    """OverCommitted if replacing the claim ``before`` (part of ``allocated``) by ``after``
    takes a resource that grows above its policy ratio."""
    for resource in RESOURCES:
        limit = policy.get(resource)
        grows = after.get(resource) > before.get(resource)
        if limit is None or not grows:
            continue
        total = allocated.get(resource) - before.get(resource) + after.get(resource)
        have = physical.get(resource)
        ratio = total / have if have else float("inf")
        if ratio > limit + 1e-9:
            raise OverCommitted(
                f"{resource} over-commitment would be {ratio:.2f}:1 ({_show(resource, total)} "
                f"allocated of {_show(resource, have)} on this host), above the policy "
                f"maximum of {limit:g}:1; free some, or raise it with "
                f"`corral host policy {resource}=<ratio>`"
            )


class CapacityService:
    def __init__(
        self, store: StateStore, instances_dir: Path, policy_file: Path,
        physical: Callable[[], Amounts] | None = None, ksm_root: Path = ksm.KSM,
    ) -> None:
        self.store = store
        self.ksm_root = ksm_root
        self.instances_dir = instances_dir
        self.policy_file = policy_file
        self._physical = physical or (lambda: physical_amounts(instances_dir))
        self._lock = threading.Lock()
        self.data_disks: Callable[[], int] = lambda: 0
        """Bytes of every data disk on this host (set by the daemon's storage wiring)."""

    def physical(self) -> Amounts:
        """This host's CPUs, memory and instance filesystem size."""
        return self._physical()

    def policy(self) -> Policy:
        try:
            data: dict[str, Any] = json.loads(self.policy_file.read_text())
        except FileNotFoundError:
            return Policy()
        return Policy(**{k: v for k, v in data.items() if k in KEYS})

    def set_policy(self, settings: dict[str, str]) -> Policy:
        with self._lock:
            before = self.policy()
            policy = parse_policy(before, settings)
            if KSM in settings:  # the kernel first: if it refuses, nothing is changed
                ksm.set_running(policy.ksm, self.ksm_root)
            tmp = self.policy_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(policy)) + "\n")
            tmp.replace(self.policy_file)
            return policy

    def apply_ksm(self) -> None:
        """At daemon start: KSM on when the policy says so (never switched off here: other
        software on the host may use it)."""
        if self.policy().ksm:
            try:
                ksm.set_running(True, self.ksm_root)
            except CorralError as exc:
                log.warning("the host policy says ksm=on, but: %s", exc.message)

    def ksm_status(self) -> ksm.KsmStatus:
        return ksm.status(self.ksm_root)

    def allocated(self) -> Amounts:
        cpu, memory, disk = self.store.allocated()
        return Amounts(cpu=cpu, memory=memory, disk=disk + self.data_disks())

    @contextlib.contextmanager
    def admit(self, new: Resources, old: Resources | None) -> Iterator[None]:
        """Check ``new`` against the policy and hold the database's write lock (then the
        accounting lock) while the caller records it, so two concurrent requests cannot both
        take the last share. The write lock first: held the other way round, a create
        waiting for its insert's turn among every other writer held the accounting lock
        meanwhile, and every other create queued behind it (p50 15 s under load).
        The host's size and the policy are read before any lock."""
        physical, policy = self._physical(), self.policy()
        with self.store.db.transaction(), self._lock:
            check(physical, self.allocated(), policy, new, old)
            yield

    @contextlib.contextmanager
    def admit_disk(self, old: int, new: int) -> Iterator[None]:
        """A data disk going from ``old`` bytes (0: a new one) to ``new``: the disk policy
        check, with the locks held while the caller records it (in ``admit``'s order)."""
        physical, policy = self._physical(), self.policy()
        with self.store.db.transaction(), self._lock:
            check_amounts(physical, self.allocated(), policy,
                          Amounts(0, 0, old), Amounts(0, 0, new))
            yield

    def report(self) -> dict[str, dict[str, float | int | None]]:
        physical, allocated, policy = self._physical(), self.allocated(), self.policy()
        found: dict[str, dict[str, float | int | None]] = {}
        for resource in RESOURCES:
            have = physical.get(resource)
            found[resource] = {
                "physical": have,
                "allocated": allocated.get(resource),
                "ratio": round(allocated.get(resource) / have, 3) if have else None,
                "max_ratio": policy.get(resource),
            }
        return found
