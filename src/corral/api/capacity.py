"""``GET /api/v1/capacity``: how many CTs, VMs and mixes of one size fit this server and
what each earns (``services/capacity_case.py``, ``domain/capacity.py``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from corral.api.deps import corral
from corral.domain.capacity import RESOURCES, Amounts, Costs, Fit, Money
from corral.domain.errors import InvalidInput
from corral.domain.sizes import parse_size
from corral.services.capacity_case import Answer, Overrides
from corral.services.core import Corral
from corral.wire.capacity import (
    AmountsModel,
    CapacityCaseModel,
    CostsModel,
    FitModel,
    MoneyModel,
    RatiosModel,
)

router = APIRouter(prefix="/api/v1", tags=["host"])
App = Annotated[Corral, Depends(corral)]
SEED = Costs()
NONE_WORDS = ("none", "unlimited")


def _size(text: str | None, what: str) -> int | None:
    return None if text is None else parse_size(text, what)


def _overhead(text: str | None, what: str) -> int | None:
    """A size that may be 0 (an overhead)."""
    if text is not None and text.strip().upper().rstrip("B") in ("0", "0.0"):
        return 0
    return _size(text, what)


def _ratio(text: str | None, resource: str) -> tuple[float | None, bool]:
    """(ratio, no maximum)"""
    if text is None:
        return None, False
    if text.strip().lower() in NONE_WORDS:
        return None, True
    try:
        value = float(text.strip().lower().removesuffix(":1"))
    except ValueError:
        raise InvalidInput(f"{resource} ratio '{text}' is not a number (e.g. 4) or none") \
            from None
    if not value > 0:
        raise InvalidInput(f"{resource} ratio must be greater than 0, not {text}")
    return value, False


@router.get("/capacity", response_model=CapacityCaseModel)
def capacity(
    app: App,
    cpus: Annotated[float, Query(gt=0)] = 1,
    memory: str = "1G",
    disk: str = "10G",
    server_network: Annotated[float, Query(ge=0)] = SEED.server_network,
    watts: Annotated[float, Query(ge=0)] = SEED.watts,
    kwh_price: Annotated[float, Query(ge=0)] = SEED.kwh_price,
    management: Annotated[float, Query(ge=0)] = SEED.management,
    price: Annotated[float, Query(ge=0)] = SEED.price,
    acquisition: Annotated[float, Query(ge=0)] = SEED.acquisition,
    host_cpus: Annotated[float | None, Query(gt=0)] = None,
    host_memory: str | None = None,
    host_disk: str | None = None,
    cpu_ratio: str | None = None,
    memory_ratio: str | None = None,
    disk_ratio: str | None = None,
    ct_overhead_memory: str | None = None,
    ct_overhead_cpu: Annotated[float | None, Query(ge=0)] = None,
    vm_overhead_memory: str | None = None,
    vm_overhead_cpu: Annotated[float | None, Query(ge=0)] = None,
    ct_count: Annotated[int | None, Query(ge=0)] = None,
    vm_count: Annotated[int | None, Query(ge=0)] = None,
    measure: bool = True,
) -> CapacityCaseModel:
    ratios = {r: _ratio(t, r) for r, t in zip(RESOURCES, (cpu_ratio, memory_ratio, disk_ratio),
                                              strict=True)}
    ask = Overrides(
        cpus=cpus, memory=parse_size(memory, "memory"), disk=parse_size(disk, "disk"),
        costs=Costs(server_network=server_network, watts=watts, kwh_price=kwh_price,
                    management=management, price=price, acquisition=acquisition),
        host_cpus=host_cpus, host_memory=_size(host_memory, "host memory"),
        host_disk=_size(host_disk, "host disk"),
        cpu_ratio=ratios["cpu"][0], memory_ratio=ratios["memory"][0],
        disk_ratio=ratios["disk"][0], no_ratio=tuple(r for r in RESOURCES if ratios[r][1]),
        ct_overhead_memory=_overhead(ct_overhead_memory, "CT overhead memory"),
        ct_overhead_cpu=ct_overhead_cpu,
        vm_overhead_memory=_overhead(vm_overhead_memory, "VM overhead memory"),
        vm_overhead_cpu=vm_overhead_cpu, ct_count=ct_count, vm_count=vm_count,
        measure=measure,
    )
    return model(app.capacity_case.answer(ask))


def _amounts(a: Amounts) -> AmountsModel:
    return AmountsModel(cpu=a.cpu, memory=a.memory, disk=a.disk)


def _money(m: Money) -> MoneyModel:
    return MoneyModel(**asdict(m))


def _fit(f: Fit) -> FitModel:
    return FitModel(label=f.label, cts=f.cts, vms=f.vms, binding=f.binding,
                    used=_amounts(f.used), per_vps=_money(f.per_vps),
                    per_server=_money(f.per_server))


def model(answer: Answer) -> CapacityCaseModel:
    case, given = answer.case, answer.given
    costs = case.costs
    return CapacityCaseModel(
        host=_amounts(given.host), size=_amounts(given.size),
        ratios=RatiosModel(cpu=given.ratios.cpu, memory=given.ratios.memory,
                           disk=given.ratios.disk),
        costs=CostsModel(**asdict(costs), power=costs.power, per_server=costs.per_server),
        ct_overhead=_amounts(given.ct_overhead), vm_overhead=_amounts(given.vm_overhead),
        ct_need=_amounts(case.ct_need), vm_need=_amounts(case.vm_need),
        rows=[_fit(f) for f in (case.ct, case.vm, *case.mixes)],
        sources=answer.sources, notes=list(answer.notes),
    )
