"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from corral.domain.statuses import OperationStatus


class ErrorBody(BaseModel):
    error: str
    message: str


class ResourcesModel(BaseModel):
    cpus: int
    memory: int
    disk: int
    cpu_limit: int | None = None
    cpu_shares: int | None = None
    memory_min: int | None = None
    cpu_pin: str | None = None
    swap: int | None = None
    io_read_bps: int | None = None
    io_write_bps: int | None = None
    io_iops: int | None = None
    pids: int | None = None
    max_cpus: int | None = None


class InstanceModel(BaseModel):
    id: int
    name: str
    type: str
    state: str
    template: str
    resources: ResourcesModel
    privileged: bool = False
    ip: list[str] = Field(default_factory=list)
    node: str
    pid: int | None = None
    created_at: str
    operation: str | None = None
    owner: str | None = None
    agent: str | None = None
    """A running VM's guest agent: "connected" (exec answers at once), or "waiting" while
    the guest boots; None where there is none (containers, foreign images, stopped VMs)."""
    labels: dict[str, str] = Field(default_factory=dict)
    group: str | None = None
    """Its placement group and rule, e.g. "db (anti-affinity)" (`info` only)."""
    stop_reason: str | None = None
    """Why a stopped instance stopped when Corral did not stop it ("crashed: QEMU … ended
    without shutting down … at …"), shown until its next start."""


class CreateRequest(BaseModel):
    name: str
    type: str
    template: str
    cpus: str | int | None = None
    memory: str | None = None
    disk: str | None = None
    privileged: bool = False
    start: bool = False
    resources: dict[str, str] = Field(default_factory=dict)
    """Any resource key (cpu_limit, io_read_bps, ...) as for `corral set`."""
    pool: str | None = None
    """The storage pool of the root disk (default: the default pool)."""
    node: str | None = None
    """In a cluster: the member to create it on (default: placement picks one)."""
    image: str | None = None
    """VMs: a disk image (raw, qcow2, …) on the daemon's host, booted through the firmware."""
    iso: str | None = None
    """VMs: an installer ISO on the daemon's host: a blank disk of ``disk`` size + CD-ROM."""
    owner: str | None = None
    """The user the instance belongs to (must exist); None: administrators only."""
    group: str | None = None
    """A placement group (`corral group create`) whose rule placement keeps."""
    require: list[str] = Field(default_factory=list)
    """Features the member must have: ``criu`` (a passing CRIU), ``kvm``, ``vlan``."""


class StopRequest(BaseModel):
    force: bool = False
    timeout: float = 30.0


class ExecRequest(BaseModel):
    argv: list[str]
    stdin_b64: str = ""
    timeout: float | None = None  # seconds; None: no limit


class ExecResponse(BaseModel):
    exit_code: int
    stdout_b64: str
    stderr_b64: str
    timed_out: bool = False


class OperationModel(BaseModel):
    id: str
    action: str
    instance: str | None
    status: OperationStatus
    progress: float
    phase: str
    error: str | None = None
    created_at: str
    updated_at: str
    requested_by: str | None = None
    """The user who started it (None: an administrator's built-in identity)."""
    parent: str | None = None
    """The bulk operation this one is an item of (GET /api/v1/operations/{id}/children)."""


class OperationLogLineModel(BaseModel):
    """One line of an operation's own log (what corrald logged while its work ran)."""

    seq: int
    time: float  # Unix seconds
    level: str
    logger: str
    message: str


class HostInfo(BaseModel):
    hostname: str
    node: str
    kernel: str
    cpus: int
    memory: int
    state_dir: str
    features: dict[str, Any]
    capacity: dict[str, Any] = Field(default_factory=dict)
    """Per resource: physical, allocated, ratio and the policy's max_ratio."""
    warnings: list[str] = Field(default_factory=list)
    """What the operator should fix (e.g. "etcd without TLS" in a cluster)."""


class TemplateModel(BaseModel):
    name: str
    version: str
    os: str
    arch: str
    size: int
    kinds: list[str]
    sha256: str
    installed: bool = True
    """On this host (False: only on other cluster members; a create here fetches it)."""
    nodes: list[str] = Field(default_factory=list)
    """The members holding it (this host alone when in no cluster)."""


class BuildTemplateRequest(BaseModel):
    name: str
    if_outdated: bool = False
    """Build only when the installed template differs from what the builder makes now."""


class Event(BaseModel):
    type: str
    time: str
    instance: str | None = None
    operation: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    node: str | None = None
    """The cluster member it happened on (absent on a host in no cluster)."""


# Networks (issue 5) ---------------------------------------------------------------------
class NetworkModel(BaseModel):
    id: int
    name: str
    type: str
    subnets: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    uplink: str | None = None
    vlan: int | None = None
    link_rate: int
    bridge: str | None = None
    nics: int = 0


class CreateNetworkRequest(BaseModel):
    name: str
    type: str
    subnets: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    uplink: str | None = None
    vlan: int | None = None
    link_rate: str | None = None
    pools: list[str] = Field(default_factory=list)


class NicModel(BaseModel):
    instance: str
    index: int
    network: str
    mac: str
    addresses: list[str]
    antispoof: bool
    host_device: str
    guest_device: str


class AddNicRequest(BaseModel):
    network: str
    ips: list[str] = Field(default_factory=list)
    mac: str | None = None
    antispoof: bool = True


class TrafficClassModel(BaseModel):
    name: str
    ranges: list[str]


class BandwidthModel(BaseModel):
    instance: str
    traffic_class: str
    direction: str
    rate: int
    ceil: int


class SetBandwidthRequest(BaseModel):
    traffic_class: str
    direction: str = "both"
    rate: str
    ceil: str | None = None


class TrafficModel(BaseModel):
    instance: str
    traffic_class: str
    direction: str
    packets: int
    bytes: int


# Resources (issue 4) --------------------------------------------------------------------
class SetResourcesRequest(BaseModel):
    settings: dict[str, str]


class KeyChangeModel(BaseModel):
    key: str
    applied: str  # "live", "next start" or "not applicable"
    note: str = ""


class SetResourcesResponse(BaseModel):
    instance: str
    resources: ResourcesModel
    changes: list[KeyChangeModel]


class StatsModel(BaseModel):
    instance: str
    type: str
    state: str
    """The lifecycle state, as ``list`` shows it (running, suspended, stopped, ...)."""
    running: bool
    """True only when ``state`` is running (a suspended instance is not)."""
    time: float
    cpu_percent: float
    cpu_seconds: float
    vcpus: int
    memory_used: int
    memory_total: int
    disk_used: int
    disk_size: int
    io_read_bytes: int
    io_write_bytes: int
    io_read_ops: int
    io_write_ops: int
    net_rx_bytes: int
    net_tx_bytes: int
    pids: int
    oom_kills: int


class CapacityEntry(BaseModel):
    physical: float
    allocated: float
    ratio: float | None = None
    max_ratio: float | None = None


class CapacityModel(BaseModel):
    cpu: CapacityEntry
    memory: CapacityEntry
    disk: CapacityEntry


class PolicyModel(BaseModel):
    cpu: float | None = None
    memory: float | None = None
    disk: float | None = None
    id_quarantine: float = 30.0
    """Days a deleted instance's id stays out of use; 0: never reused."""
    ksm: bool = False
    """Whether the kernel merges identical memory pages of VMs (KSM)."""
    audit_retention: float = 365.0
    """Days an audit log entry is kept; 0: no age limit."""
    audit_max_entries: int = 1_000_000
    """The most audit log entries kept (the oldest pruned first); 0: no count limit."""
    vm_launch_priority: int = 16
    """The factor on a starting VM's CPU weight until QEMU is up (1: none)."""


class SetPolicyRequest(BaseModel):
    settings: dict[str, str]
