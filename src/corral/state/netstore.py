"""Queries for networks, NICs, traffic classes, bandwidth rules and counters (SQLite)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.domain.errors import Conflict, NotFound
from corral.domain.network import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.state.db import open_database
from corral.state.hotpath import HotPath
from corral.state.netmodels import (
    BandwidthRow,
    NetworkRow,
    NicAddressRow,
    NicRow,
    TrafficClassRow,
    TrafficCounterRow,
)

FIRST_NETWORK_ID = 1


def _network(row: NetworkRow) -> NetworkSpec:
    return NetworkSpec(
        id=row.id, name=row.name, type=NetworkType(row.type),
        subnets=tuple(ipaddress.ip_network(s) for s in row.subnets),
        gateways=tuple(ipaddress.ip_address(g) for g in row.gateways),
        uplink=row.uplink, vlan=row.vlan, link_rate=row.link_rate,
        pools=tuple((ipaddress.ip_address(a), ipaddress.ip_address(b)) for a, b in row.pools),
    )


class NetworkStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)
        self._hot = HotPath(path)

    # Networks ---------------------------------------------------------------------------
    def list_networks(self) -> list[NetworkSpec]:
        with self._sessions() as s:
            return [_network(r) for r in s.scalars(select(NetworkRow).order_by(NetworkRow.id))]

    def get_network(self, ref: str) -> NetworkSpec:
        with self._sessions() as s:
            query = select(NetworkRow).where(
                NetworkRow.id == int(ref) if ref.isdigit() else NetworkRow.name == ref
            )
            row = s.scalars(query).first()
            if row is None:
                raise NotFound(f"no network '{ref}'")
            return _network(row)

    def insert_network(self, spec: NetworkSpec) -> NetworkSpec:
        """Store ``spec`` under the lowest free id (its ``id`` is ignored)."""
        with self._sessions() as s, s.begin():
            if s.scalars(select(NetworkRow).where(NetworkRow.name == spec.name)).first():
                raise Conflict(f"a network named '{spec.name}' already exists")
            used = set(s.scalars(select(NetworkRow.id)))
            new_id = FIRST_NETWORK_ID
            while new_id in used:
                new_id += 1
            row = NetworkRow(
                id=new_id, name=spec.name, type=spec.type.value,
                subnets=[str(n) for n in spec.subnets], gateways=[str(g) for g in spec.gateways],
                pools=[[str(a), str(b)] for a, b in spec.pools], uplink=spec.uplink,
                vlan=spec.vlan, link_rate=spec.link_rate,
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
            s.add(row)
            s.flush()
            return _network(row)

    def delete_network(self, network_id: int) -> None:
        with self._sessions() as s, s.begin():
            s.execute(delete(NetworkRow).where(NetworkRow.id == network_id))

    # NICs -------------------------------------------------------------------------------
    def _nics(self, s: Session, rows: list[NicRow]) -> list[NicSpec]:
        networks = {r.id: _network(r) for r in s.scalars(select(NetworkRow))}
        found = []
        for row in rows:
            addresses = s.scalars(
                select(NicAddressRow.address).where(NicAddressRow.nic_id == row.id)
                .order_by(NicAddressRow.id)
            )
            found.append(NicSpec(
                instance_id=row.instance_id, index=row.idx, network=networks[row.network_id],
                mac=row.mac, addresses=tuple(ipaddress.ip_address(a) for a in addresses),
                antispoof=row.antispoof,
            ))
        return found

    def list_nics(self, instance_id: int | None = None,
                  network_id: int | None = None) -> list[NicSpec]:
        with self._sessions() as s:
            query = select(NicRow).order_by(NicRow.instance_id, NicRow.idx)
            if instance_id is not None:
                query = query.where(NicRow.instance_id == instance_id)
            if network_id is not None:
                query = query.where(NicRow.network_id == network_id)
            return self._nics(s, list(s.scalars(query)))

    def instance_with_nics(self, name: str) -> int | None:
        """The id of instance ``name`` if it has a NIC, else None: asked after every start
        and stop (most instances have none), in plain SQL (hotpath.py says why)."""
        row = self._hot.one("SELECT i.id FROM instances AS i JOIN nics AS n "
                            "ON n.instance_id = i.id WHERE i.name = ? LIMIT 1", (name,))
        return None if row is None else int(row[0])

    def used_addresses(self, network_id: int) -> list[IPAddress]:
        with self._sessions() as s:
            query = select(NicAddressRow.address).where(NicAddressRow.network_id == network_id)
            return [ipaddress.ip_address(a) for a in s.scalars(query)]

    def used_macs(self) -> list[str]:
        with self._sessions() as s:
            return list(s.scalars(select(NicRow.mac)))

    def insert_nic(self, nic: NicSpec) -> None:
        """Conflict if the index, the MAC or an address (per network) is already taken."""
        try:
            with self._sessions() as s, s.begin():
                row = NicRow(instance_id=nic.instance_id, idx=nic.index,
                             network_id=nic.network.id, mac=nic.mac, antispoof=nic.antispoof)
                s.add(row)
                s.flush()
                for address in nic.addresses:
                    s.add(NicAddressRow(nic_id=row.id, network_id=nic.network.id,
                                        address=str(address)))
                s.flush()
        except IntegrityError as exc:
            said = str(exc.orig)
            if "nic_addresses" in said:
                raise Conflict(
                    "one of the addresses is already assigned on network "
                    f"'{nic.network.name}'"
                ) from None
            if "mac" in said:
                raise Conflict(f"MAC address {nic.mac} is already in use") from None
            raise Conflict(f"NIC {nic.index} of instance {nic.instance_id} exists") from None

    def delete_nic(self, instance_id: int, index: int) -> None:
        with self._sessions() as s, s.begin():
            row = s.scalars(select(NicRow).where(NicRow.instance_id == instance_id,
                                                 NicRow.idx == index)).first()
            if row is not None:
                s.execute(delete(NicAddressRow).where(NicAddressRow.nic_id == row.id))
                s.delete(row)

    # Traffic classes --------------------------------------------------------------------
    def list_classes(self) -> list[TrafficClass]:
        with self._sessions() as s:
            rows = s.scalars(select(TrafficClassRow).order_by(TrafficClassRow.id))
            return [TrafficClass(r.name, tuple(ipaddress.ip_network(p) for p in r.prefixes),
                                 r.id) for r in rows]

    def put_class(self, cls: TrafficClass) -> None:
        with self._sessions() as s, s.begin():
            row = s.scalars(select(TrafficClassRow).where(
                TrafficClassRow.name == cls.name)).first()
            prefixes = [str(p) for p in cls.prefixes]
            if row is None:
                s.add(TrafficClassRow(name=cls.name, prefixes=prefixes))
            else:
                row.prefixes = prefixes

    def delete_class(self, name: str) -> None:
        with self._sessions() as s, s.begin():
            done = s.execute(delete(TrafficClassRow).where(TrafficClassRow.name == name))
            if not done.rowcount:
                raise NotFound(f"no traffic class '{name}'")

    # Bandwidth --------------------------------------------------------------------------
    def list_bandwidth(self, instance_id: int | None = None) -> list[BandwidthRule]:
        with self._sessions() as s:
            query = select(BandwidthRow).order_by(BandwidthRow.id)
            if instance_id is not None:
                query = query.where(BandwidthRow.instance_id == instance_id)
            return [BandwidthRule(r.id, r.instance_id, r.traffic_class, Direction(r.direction),
                                  r.rate, r.ceil) for r in s.scalars(query)]

    def put_bandwidth(self, instance_id: int, cls: str, direction: Direction, rate: int,
                      ceil: int) -> None:
        with self._sessions() as s, s.begin():
            row = s.scalars(select(BandwidthRow).where(
                BandwidthRow.instance_id == instance_id, BandwidthRow.traffic_class == cls,
                BandwidthRow.direction == direction.value)).first()
            if row is None:
                s.add(BandwidthRow(instance_id=instance_id, traffic_class=cls,
                                   direction=direction.value, rate=rate, ceil=ceil))
            else:
                row.rate, row.ceil = rate, ceil

    def delete_bandwidth(self, instance_id: int, cls: str | None = None) -> None:
        with self._sessions() as s, s.begin():
            query = delete(BandwidthRow).where(BandwidthRow.instance_id == instance_id)
            if cls is not None:
                query = query.where(BandwidthRow.traffic_class == cls)
            s.execute(query)

    # Counters ---------------------------------------------------------------------------
    def load_counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        with self._sessions() as s:
            found: dict[str, dict[str, tuple[int, int]]] = {}
            for r in s.scalars(select(TrafficCounterRow)):
                found.setdefault(r.family, {})[r.name] = (r.packets, r.bytes)
            return found

    def save_counters(
        self, family: str, values: dict[str, tuple[int, int, int, str, Direction]]
    ) -> None:
        """name -> (packets, bytes, instance id, class, direction); only ever grows."""
        with self._sessions() as s, s.begin():
            for name, (packets, octets, instance_id, cls, direction) in values.items():
                row = s.get(TrafficCounterRow, (family, name))
                if row is None:
                    s.add(TrafficCounterRow(family=family, name=name, instance_id=instance_id,
                                            traffic_class=cls, direction=direction.value,
                                            packets=packets, bytes=octets))
                elif octets >= row.bytes:
                    row.packets, row.bytes = packets, octets

    def counter_rows(self) -> list[TrafficCounterRow]:
        with self._sessions() as s:
            return list(s.scalars(select(TrafficCounterRow)))

    def delete_instance(self, instance_id: int) -> None:
        """Forget every NIC, rule and counter of an instance that no longer exists."""
        with self._sessions() as s, s.begin():
            ids = list(s.scalars(select(NicRow.id).where(NicRow.instance_id == instance_id)))
            s.execute(delete(NicAddressRow).where(NicAddressRow.nic_id.in_(ids)))
            s.execute(delete(NicRow).where(NicRow.instance_id == instance_id))
            s.execute(delete(BandwidthRow).where(BandwidthRow.instance_id == instance_id))
            s.execute(delete(TrafficCounterRow).where(
                TrafficCounterRow.instance_id == instance_id))
