"""Resources: live changes, usage, capacity and policy, and the Prometheus /metrics page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from corral.api.deps import corral
from corral.domain.lifecycle import State
from corral.services.core import Corral
from corral.services.hostmetrics import (
    commitment_text,
    database_text,
    instances_text,
    ksm_text,
    pools_text,
)
from corral.services.resources import Usage, capacity_metrics_text, metrics_text
from corral.wire.models import (
    CapacityModel,
    KeyChangeModel,
    PolicyModel,
    ResourcesModel,
    SetPolicyRequest,
    SetResourcesRequest,
    SetResourcesResponse,
    StatsModel,
)

router = APIRouter(tags=["resources"])
App = Annotated[Corral, Depends(corral)]


def stats_model(u: Usage) -> StatsModel:
    s = u.stats
    return StatsModel(
        instance=u.instance, type=u.kind.value, state=u.state.value,
        running=u.state is State.RUNNING, time=u.time,
        cpu_percent=u.cpu_percent, cpu_seconds=s.cpu_ns / 1e9, vcpus=s.vcpus,
        memory_used=s.memory_used, memory_total=s.memory_total, disk_used=s.disk_used,
        disk_size=s.disk_size, io_read_bytes=s.io_read_bytes, io_write_bytes=s.io_write_bytes,
        io_read_ops=s.io_read_ops, io_write_ops=s.io_write_ops, net_rx_bytes=u.net_rx_bytes,
        net_tx_bytes=u.net_tx_bytes, pids=s.pids, oom_kills=s.oom_kills,
    )


@router.patch("/api/v1/instances/{ref}/resources", response_model=SetResourcesResponse)
def set_resources(ref: str, body: SetResourcesRequest, app: App) -> SetResourcesResponse:
    rec, applied = app.resources.set(ref, body.settings)
    return SetResourcesResponse(
        instance=rec.name, resources=ResourcesModel(**rec.resources.to_dict()),
        changes=[KeyChangeModel(key=c.key, applied=c.applied.value, note=c.note)
                 for c in applied.changes],
    )


@router.get("/api/v1/instances/{ref}/stats", response_model=StatsModel)
def instance_stats(ref: str, app: App) -> StatsModel:
    return stats_model(app.resources.usage(ref))


@router.get("/api/v1/stats", response_model=list[StatsModel])
def all_stats(app: App) -> list[StatsModel]:
    return [stats_model(u) for u in app.resources.usage_all()]


@router.get("/api/v1/host/capacity", response_model=CapacityModel)
def capacity(app: App) -> CapacityModel:
    return CapacityModel.model_validate(app.capacity.report())


@router.get("/api/v1/host/policy", response_model=PolicyModel)
def get_policy(app: App) -> PolicyModel:
    return PolicyModel.model_validate(app.capacity.policy(), from_attributes=True)


@router.put("/api/v1/host/policy", response_model=PolicyModel)
def set_policy(body: SetPolicyRequest, app: App) -> PolicyModel:
    return PolicyModel.model_validate(app.capacity.set_policy(body.settings),
                                      from_attributes=True)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(app: App) -> str:
    """Instance usage, host capacity and commitment, pools, KSM, instance counts,
    operations and (networks) traffic counters in one scrape."""
    from corral.services.networks import metrics_text as traffic_text

    usage = app.resources.usage_all(pause=False)
    report = app.capacity.report()
    return (metrics_text(usage)
            + capacity_metrics_text(report)
            + commitment_text(report)
            + instances_text(usage)
            + pools_text(app.storage.pool_figures())
            + ksm_text(app.capacity.ksm_status())
            + app.operations.metrics.text(app.operations.running())
            + database_text(app.store.db.writes)
            + traffic_text(app.networks.traffic()))
