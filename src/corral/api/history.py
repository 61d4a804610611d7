"""/api/v1/instances/{ref}/history and /api/v1/host/history: the graphs' samples."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from corral.api.deps import Policy, corral
from corral.services.core import Corral
from corral.services.history import Range, Sample
from corral.wire.history import HistoryModel, HistoryPointModel

router = APIRouter(prefix="/api/v1", tags=["history"])
App = Annotated[Corral, Depends(corral)]
RangeQuery = Annotated[str, Query(alias="range", description="hour, day or month")]


def _model(instance: str | None, span: Range, since: int, end: int,
           samples: list[Sample]) -> HistoryModel:
    points = []
    classes: set[str] = set()
    for s in samples:
        traffic: dict[str, dict[str, float]] = {}
        for (cls, direction), bps in s.traffic.items():
            traffic.setdefault(cls, {})[direction] = bps
            classes.add(cls)
        points.append(HistoryPointModel(
            time=s.ts, seconds=s.seconds, cpu_percent=s.cpu_percent, memory_used=s.memory_used,
            memory_total=s.memory_total, disk_read_bps=s.disk_read_bps,
            disk_write_bps=s.disk_write_bps, net_rx_bps=s.net_rx_bps, net_tx_bps=s.net_tx_bps,
            traffic=traffic))
    return HistoryModel(instance=instance, range=span.value, step=span.step, start=since,
                        end=end, classes=sorted(classes), points=points)


@router.get("/instances/{ref}/history", response_model=HistoryModel)
def instance_history(ref: str, app: App, policy: Policy,
                     range_: RangeQuery = "hour") -> HistoryModel:
    """CPU, memory, disk IO and network (per traffic class) of one instance over the last
    hour or day (a point a minute) or month (a point an hour)."""
    span = Range.parse(range_)
    rec = policy.find_instance(app.store.get_instance, ref)
    since, samples = app.history.series(rec.id, span)
    return _model(rec.name, span, since, int(app.history.clock()), samples)


@router.get("/host/history", response_model=HistoryModel)
def host_history(app: App, range_: RangeQuery = "hour") -> HistoryModel:
    """The same figures summed over every instance of this host."""
    span = Range.parse(range_)
    since, samples = app.history.series(None, span)
    return _model(None, span, since, int(app.history.clock()), samples)
