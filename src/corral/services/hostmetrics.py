"""Host-level Prometheus series: commitment against the policy, storage pools, KSM, instance
counts by type and state, and operations (``services/opmetrics.py``).

Each renderer takes figures the caller already has, so /metrics costs one pass over the
instances (``services/resources.py``) plus a few host-wide reads, never one per instance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.host.ksm import KsmStatus
from corral.services.resources import Usage, sample
from corral.state.database import WriteFigures
from corral.storage.pools.base import PoolUsage


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _one(name: str, kind: str, text: str, value: object) -> list[str]:
    """A family of one unlabelled series."""
    return [*_family(name, kind, text), f"{name} {value}"]


def commitment_text(report: dict[str, dict[str, float | int | None]]) -> str:
    """Allocated/physical per resource and the policy's limit on it (``corral host policy``)."""
    lines = _family("corral_host_commitment_ratio", "gauge",
                    "Allocated to instances divided by the physical amount.")
    lines += [f'corral_host_commitment_ratio{{resource="{r}"}} {sample(v["allocated"] / v["physical"])}'  # noqa: E501
              for r, v in report.items() if v["physical"] and v["allocated"] is not None]
    lines += _family("corral_host_commitment_max_ratio", "gauge",
                     "The host policy's over-commitment limit (allocated/physical).")
    lines += [f'corral_host_commitment_max_ratio{{resource="{r}"}} {sample(v["max_ratio"])}'
              for r, v in report.items() if v["max_ratio"] is not None]
    return "\n".join(lines) + "\n"


def pools_text(pools: Iterable[tuple[str, str, PoolUsage | None, int]]) -> str:
    """``pools``: (name, driver, usage or None when it could not be read, volumes)."""
    rows = list(pools)
    series = (
        ("corral_pool_size_bytes", "Size of the storage pool.", "total"),
        ("corral_pool_used_bytes", "Bytes used in the storage pool.", "used"),
        ("corral_pool_free_bytes", "Bytes free in the storage pool.", "free"),
    )
    lines: list[str] = []
    for name, text, field in series:
        lines += _family(name, "gauge", text)
        lines += [f'{name}{{pool="{p}",driver="{d}"}} {getattr(u, field)}'
                  for p, d, u, _ in rows if u is not None]
    lines += _family("corral_pool_volumes", "gauge", "Volumes (disks) in the storage pool.")
    lines += [f'corral_pool_volumes{{pool="{p}",driver="{d}"}} {n}' for p, d, _, n in rows]
    lines += _family("corral_pool_up", "gauge", "1 if the pool's usage could be read.")
    lines += [f'corral_pool_up{{pool="{p}",driver="{d}"}} {0 if u is None else 1}'
              for p, d, u, _ in rows]
    return "\n".join(lines) + "\n"


def ksm_text(status: KsmStatus) -> str:
    lines = _one("corral_host_ksm_available", "gauge", "1 if the kernel has KSM.",
                 int(status.available))
    if status.available:
        lines += _one("corral_host_ksm_running", "gauge", "1 if KSM is merging pages.",
                      int(status.running))
        lines += _one("corral_host_ksm_pages_shared", "gauge",
                      "Pages KSM keeps (one copy each).", status.pages_shared)
        lines += _one("corral_host_ksm_pages_sharing", "gauge",
                      "Pages pointing at a shared page instead of their own copy.",
                      status.pages_sharing)
        lines += _one("corral_host_ksm_saved_bytes", "gauge", "Memory KSM saves.",
                      status.saved_bytes)
    return "\n".join(lines) + "\n"


def instances_text(rows: list[Usage]) -> str:
    """Instances by type and state; every pair present (0 too), so a rate or alert on a
    state that has none yet still has a series."""
    counts = Counter((u.kind, u.state) for u in rows)
    lines = _family("corral_instances", "gauge", "Instances on this host by type and state.")
    lines += [f'corral_instances{{type="{k.value}",state="{s.value}"}} {counts[(k, s)]}'
              for k in Kind for s in State]
    return "\n".join(lines) + "\n"


def database_text(figures: WriteFigures) -> str:
    """The daemon's database write transactions: how many, and the seconds spent waiting for
    the one write lock and holding it (what a write-heavy burst, a bulk create, queues on)."""
    lines = _one("corral_db_write_transactions_total", "counter",
                 "Database write transactions since the daemon started.", figures.transactions)
    lines += _one("corral_db_write_wait_seconds_total", "counter",
                  "Seconds threads waited for the database's write lock.",
                  sample(figures.waited_ns / 1e9))
    lines += _one("corral_db_write_held_seconds_total", "counter",
                  "Seconds the database's write lock was held (the transactions' own time).",
                  sample(figures.held_ns / 1e9))
    return "\n".join(lines) + "\n"
