"""The body of ``GET /api/v1/capacity`` (``corral capacity``): the hosting business case."""

from __future__ import annotations

from pydantic import BaseModel


class AmountsModel(BaseModel):
    cpu: float
    """CPUs (a fraction of one for an idle instance's overhead)"""
    memory: float
    """bytes"""
    disk: float
    """bytes"""


class RatiosModel(BaseModel):
    cpu: float | None
    memory: float | None
    disk: float | None


class CostsModel(BaseModel):
    """Dollars per month; power = watts around the clock at the kWh price."""

    server_network: float
    watts: float
    kwh_price: float
    hours: float
    management: float
    price: float
    acquisition: float
    power: float
    per_server: float


class MoneyModel(BaseModel):
    revenue: float
    cost: float
    gross: float
    net: float


class FitModel(BaseModel):
    label: str
    """ct, vm or mix"""
    cts: int
    vms: int
    binding: str
    """the resource that runs out first; empty when the count was given"""
    used: AmountsModel
    """fraction of the server's cpu, memory and disk taken"""
    per_vps: MoneyModel
    per_server: MoneyModel


class CapacityCaseModel(BaseModel):
    host: AmountsModel
    size: AmountsModel
    ratios: RatiosModel
    costs: CostsModel
    ct_overhead: AmountsModel
    vm_overhead: AmountsModel
    ct_need: AmountsModel
    """what one CT of the size takes of the server under the policy"""
    vm_need: AmountsModel
    rows: list[FitModel]
    """CTs only, VMs only, then the mixes"""
    sources: dict[str, str]
    notes: list[str]
