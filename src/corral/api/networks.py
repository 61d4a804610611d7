"""/api/v1/networks, NICs, traffic classes, bandwidth, traffic counters, and /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from corral.api.deps import corral
from corral.domain.network import BandwidthRule, NetworkSpec, NicSpec
from corral.services.core import Corral
from corral.services.networks import metrics_text
from corral.wire.models import (
    AddNicRequest,
    BandwidthModel,
    CreateNetworkRequest,
    NetworkModel,
    NicModel,
    SetBandwidthRequest,
    TrafficClassModel,
    TrafficModel,
)

router = APIRouter(tags=["networks"])
App = Annotated[Corral, Depends(corral)]


def _network(spec: NetworkSpec, nics: int) -> NetworkModel:
    return NetworkModel(
        id=spec.id, name=spec.name, type=spec.type.value,
        subnets=[str(s) for s in spec.subnets], gateways=[str(g) for g in spec.gateways],
        uplink=spec.uplink, vlan=spec.vlan, link_rate=spec.link_rate, bridge=spec.bridge,
        nics=nics,
    )


def _nic(instance: str, nic: NicSpec) -> NicModel:
    return NicModel(
        instance=instance, index=nic.index, network=nic.network.name, mac=nic.mac,
        addresses=[str(a) for a in nic.addresses], antispoof=nic.antispoof,
        host_device=nic.host_ifname, guest_device=nic.guest_ifname,
    )


@router.get("/api/v1/networks", response_model=list[NetworkModel])
def list_networks(app: App) -> list[NetworkModel]:
    nics = app.networks.store.list_nics()
    return [_network(n, sum(1 for x in nics if x.network.id == n.id))
            for n in app.networks.list_networks()]


@router.post("/api/v1/networks", response_model=NetworkModel, status_code=201)
def create_network(body: CreateNetworkRequest, app: App) -> NetworkModel:
    spec = app.networks.create_network(
        body.name, body.type, body.subnets, body.gateways, body.uplink, body.vlan,
        body.link_rate, body.pools,
    )
    return _network(spec, 0)


@router.get("/api/v1/networks/{ref}", response_model=NetworkModel)
def show_network(ref: str, app: App) -> NetworkModel:
    spec = app.networks.get_network(ref)
    return _network(spec, len(app.networks.store.list_nics(network_id=spec.id)))


@router.delete("/api/v1/networks/{ref}", status_code=204)
def delete_network(ref: str, app: App) -> None:
    app.networks.delete_network(ref)


@router.get("/api/v1/nics", response_model=list[NicModel])
def list_all_nics(app: App) -> list[NicModel]:
    return [_nic(name, n) for name, n in app.networks.list_nics()]


@router.get("/api/v1/instances/{ref}/nics", response_model=list[NicModel])
def list_nics(ref: str, app: App) -> list[NicModel]:
    return [_nic(name, n) for name, n in app.networks.list_nics(ref)]


@router.post("/api/v1/instances/{ref}/nics", response_model=NicModel, status_code=201)
def add_nic(ref: str, body: AddNicRequest, app: App) -> NicModel:
    nic = app.networks.add_nic(ref, body.network, body.ips, body.mac, body.antispoof)
    return _nic(app.instances.store.get_instance(ref).name, nic)


@router.delete("/api/v1/instances/{ref}/nics/{index}", status_code=204)
def remove_nic(ref: str, index: int, app: App) -> None:
    app.networks.remove_nic(ref, index)


@router.get("/api/v1/traffic-classes", response_model=list[TrafficClassModel])
def list_classes(app: App) -> list[TrafficClassModel]:
    return [TrafficClassModel(name=c.name, ranges=[str(p) for p in c.prefixes])
            for c in app.networks.list_classes()]


@router.put("/api/v1/traffic-classes/{name}", response_model=TrafficClassModel)
def set_class(name: str, body: TrafficClassModel, app: App) -> TrafficClassModel:
    cls = app.networks.set_class(f"{name}={','.join(body.ranges)}")
    return TrafficClassModel(name=cls.name, ranges=[str(p) for p in cls.prefixes])


@router.delete("/api/v1/traffic-classes/{name}", status_code=204)
def delete_class(name: str, app: App) -> None:
    app.networks.delete_class(name)


def _bandwidth(instance: str, rule: BandwidthRule) -> BandwidthModel:
    return BandwidthModel(instance=instance, traffic_class=rule.traffic_class,
                          direction=rule.direction.value, rate=rule.rate, ceil=rule.ceil)


@router.get("/api/v1/bandwidth", response_model=list[BandwidthModel])
def list_bandwidth(app: App, instance: str | None = None) -> list[BandwidthModel]:
    found = []
    for name, rule in app.networks.list_bandwidth(instance):
        assert isinstance(rule, BandwidthRule)
        found.append(_bandwidth(name, rule))
    return found


@router.put("/api/v1/instances/{ref}/bandwidth", status_code=204)
def set_bandwidth(ref: str, body: SetBandwidthRequest, app: App) -> None:
    app.networks.set_bandwidth(ref, body.traffic_class, body.direction, body.rate, body.ceil)


@router.delete("/api/v1/instances/{ref}/bandwidth", status_code=204)
def clear_bandwidth(ref: str, app: App, traffic_class: str | None = None) -> None:
    app.networks.clear_bandwidth(ref, traffic_class)


@router.get("/api/v1/traffic", response_model=list[TrafficModel])
def traffic(app: App, instance: str | None = None) -> list[TrafficModel]:
    return [TrafficModel(instance=r.instance, traffic_class=r.traffic_class,
                         direction=r.direction.value, packets=r.packets, bytes=r.bytes)
            for r in app.networks.traffic(instance)]


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(app: App) -> str:
    return metrics_text(app.networks.traffic())
