"""Networks, NICs, traffic classes, bandwidth rules and counters in the daemon's database (the
only code building their queries)."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace

from corral.domain.errors import Conflict, NotFound
from corral.domain.names import is_decimal
from corral.domain.network import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.state.database import Database, Mapper, Row, to_sql_datetime, utcnow

FIRST_NETWORK_ID = 1


@dataclass(frozen=True)
class CounterRecord:
    """The last value read from one kernel counter: a host reboot resumes from these."""

    family: str
    name: str
    instance_id: int
    traffic_class: str
    direction: Direction
    packets: int
    bytes: int


NETWORKS: Mapper[NetworkSpec] = Mapper(
    "networks",
    ("id", "name", "type", "subnets", "gateways", "pools", "uplink", "vlan", "link_rate"),
    lambda r: NetworkSpec(
        id=r[0], name=r[1], type=NetworkType(r[2]),
        subnets=tuple(ipaddress.ip_network(s) for s in json.loads(r[3])),
        gateways=tuple(ipaddress.ip_address(g) for g in json.loads(r[4])),
        pools=tuple((ipaddress.ip_address(a), ipaddress.ip_address(b))
                    for a, b in json.loads(r[5])),
        uplink=r[6], vlan=r[7], link_rate=r[8]),
    lambda n: (n.id, n.name, n.type.value, json.dumps([str(s) for s in n.subnets]),
               json.dumps([str(g) for g in n.gateways]),
               json.dumps([[str(a), str(b)] for a, b in n.pools]), n.uplink, n.vlan,
               n.link_rate),
)
"""(``created_at`` is written on insert and not part of the spec.)"""

# nics + nic_addresses: a NIC needs its network and its addresses, so its mapper takes them
_NIC_COLUMNS = ("id", "instance_id", "idx", "network_id", "mac", "antispoof")


def _load_nic(row: Row, network: NetworkSpec, addresses: Sequence[str]) -> NicSpec:
    return NicSpec(instance_id=row[1], index=row[2], network=network, mac=row[4],
                   addresses=tuple(ipaddress.ip_address(a) for a in addresses),
                   antispoof=bool(row[5]))


def _dump_nic(nic: NicSpec) -> tuple[object, ...]:
    """The ``nics`` row without its id (chosen by SQLite)."""
    return (nic.instance_id, nic.index, nic.network.id, nic.mac, nic.antispoof)


CLASSES: Mapper[TrafficClass] = Mapper(
    "traffic_classes", ("id", "name", "prefixes"),
    lambda r: TrafficClass(r[1], tuple(ipaddress.ip_network(p) for p in json.loads(r[2])), r[0]),
    lambda c: (c.id, c.name, json.dumps([str(p) for p in c.prefixes])),
)

BANDWIDTH: Mapper[BandwidthRule] = Mapper(
    "bandwidth_rules", ("id", "instance_id", "traffic_class", "direction", "rate", "ceil"),
    lambda r: BandwidthRule(r[0], r[1], r[2], Direction(r[3]), r[4], r[5]),
    lambda b: (b.id, b.instance_id, b.traffic_class, b.direction.value, b.rate, b.ceil),
)

COUNTERS: Mapper[CounterRecord] = Mapper(
    "traffic_counters",
    ("family", "name", "instance_id", "traffic_class", "direction", "packets", "bytes"),
    lambda r: CounterRecord(r[0], r[1], r[2], r[3], Direction(r[4]), r[5], r[6]),
    lambda c: (c.family, c.name, c.instance_id, c.traffic_class, c.direction.value, c.packets,
               c.bytes),
)


class NetworkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Networks ---------------------------------------------------------------------------
    def list_networks(self) -> list[NetworkSpec]:
        return [NETWORKS.load(r) for r in self.db.all(f"{NETWORKS.select} ORDER BY id")]

    def get_network(self, ref: str) -> NetworkSpec:
        key = "id" if is_decimal(ref) else "name"
        row = self.db.one(f"{NETWORKS.select} WHERE {key} = ?",
                          (int(ref) if is_decimal(ref) else ref,))
        if row is None:
            raise NotFound(f"no network '{ref}'")
        return NETWORKS.load(row)

    def insert_network(self, spec: NetworkSpec) -> NetworkSpec:
        """Store ``spec`` under the lowest free id (its ``id`` is ignored)."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM networks WHERE name = ?", (spec.name,)).fetchone():
                raise Conflict(f"a network named '{spec.name}' already exists")
            used = {r[0] for r in conn.execute("SELECT id FROM networks")}
            new_id = FIRST_NETWORK_ID
            while new_id in used:
                new_id += 1
            stored = replace(spec, id=new_id)
            conn.execute(f"INSERT INTO networks ({', '.join(NETWORKS.columns)}, created_at) "
                         f"VALUES ({', '.join('?' * (len(NETWORKS.columns) + 1))})",
                         (*NETWORKS.dump(stored), to_sql_datetime(utcnow())))
            return stored

    def delete_network(self, network_id: int) -> None:
        self.db.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    # NICs -------------------------------------------------------------------------------
    def list_nics(self, instance_id: int | None = None,
                  network_id: int | None = None) -> list[NicSpec]:
        where = [(c, v) for c, v in (("instance_id", instance_id), ("network_id", network_id))
                 if v is not None]
        clause = (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)) if where else ""
        rows = self.db.all(f"SELECT {', '.join(_NIC_COLUMNS)} FROM nics{clause} "
                           "ORDER BY instance_id, idx", [v for _, v in where])
        if not rows:
            return []
        networks = {n.id: n for n in self.list_networks()}
        addresses: dict[int, list[str]] = {}
        marks = ", ".join("?" * len(rows))
        for nic_id, address in self.db.all(
                f"SELECT nic_id, address FROM nic_addresses WHERE nic_id IN ({marks}) "
                "ORDER BY id", [r[0] for r in rows]):
            addresses.setdefault(nic_id, []).append(address)
        return [_load_nic(r, networks[r[3]], addresses.get(r[0], [])) for r in rows]

    def assigned_addresses(self, instance_id: int | None = None) -> dict[int, tuple[str, ...]]:
        """The addresses assigned to each instance's NICs (NIC order, no prefix length), one
        query for all (``list``: no file read or stat per instance); instances without NIC
        addresses are left out."""
        one = instance_id is not None
        clause, params = ("WHERE n.instance_id = ? ", (instance_id,)) if one else ("", ())
        found: dict[int, list[str]] = {}
        for owner, address in self.db.all(
                "SELECT n.instance_id, a.address FROM nics AS n JOIN nic_addresses AS a "
                f"ON a.nic_id = n.id {clause}ORDER BY n.instance_id, n.idx, a.id", params):
            text = str(address).split("/", 1)[0]
            mine = found.setdefault(owner, [])
            if text not in mine:
                mine.append(text)
        return {owner: tuple(addresses) for owner, addresses in found.items()}

    def instance_with_nics(self, name: str) -> int | None:
        """The id of instance ``name`` if it has a NIC, else None: asked after every start
        and stop (most instances have none)."""
        row = self.db.one("SELECT i.id FROM instances AS i JOIN nics AS n "
                          "ON n.instance_id = i.id WHERE i.name = ? LIMIT 1", (name,))
        return None if row is None else int(row[0])

    def used_addresses(self, network_id: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in self.db.column(
            "SELECT address FROM nic_addresses WHERE network_id = ?", (network_id,))]

    def used_macs(self) -> list[str]:
        return self.db.column("SELECT mac FROM nics")

    def insert_nic(self, nic: NicSpec) -> None:
        """Conflict if the index, the MAC or an address (per network) is already taken."""
        try:
            with self.db.transaction() as conn:
                nic_id = conn.execute(
                    f"INSERT INTO nics ({', '.join(_NIC_COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?)",
                    _dump_nic(nic)).lastrowid
                conn.executemany(
                    "INSERT INTO nic_addresses (nic_id, network_id, address) VALUES (?, ?, ?)",
                    [(nic_id, nic.network.id, str(a)) for a in nic.addresses])
        except sqlite3.IntegrityError as exc:
            said = str(exc)
            if "nic_addresses" in said:
                raise Conflict(
                    "one of the addresses is already assigned on network "
                    f"'{nic.network.name}'"
                ) from None
            if "mac" in said:
                raise Conflict(f"MAC address {nic.mac} is already in use") from None
            raise Conflict(f"NIC {nic.index} of instance {nic.instance_id} exists") from None

    def delete_nic(self, instance_id: int, index: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM nic_addresses WHERE nic_id IN (SELECT id FROM nics "
                         "WHERE instance_id = ? AND idx = ?)", (instance_id, index))
            conn.execute("DELETE FROM nics WHERE instance_id = ? AND idx = ?",
                         (instance_id, index))

    # Traffic classes --------------------------------------------------------------------
    def list_classes(self) -> list[TrafficClass]:
        return [CLASSES.load(r) for r in self.db.all(f"{CLASSES.select} ORDER BY id")]

    def put_class(self, cls: TrafficClass) -> None:
        """Add ``cls`` or replace the prefixes of the class of that name (its id stays)."""
        prefixes = CLASSES.dump(cls)[2]
        self.db.execute("INSERT INTO traffic_classes (name, prefixes) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET prefixes = excluded.prefixes",
                        (cls.name, prefixes))

    def delete_class(self, name: str) -> None:
        if not self.db.execute("DELETE FROM traffic_classes WHERE name = ?", (name,)):
            raise NotFound(f"no traffic class '{name}'")

    # Bandwidth --------------------------------------------------------------------------
    def list_bandwidth(self, instance_id: int | None = None) -> list[BandwidthRule]:
        if instance_id is None:
            rows = self.db.all(f"{BANDWIDTH.select} ORDER BY id")
        else:
            rows = self.db.all(f"{BANDWIDTH.select} WHERE instance_id = ? ORDER BY id",
                               (instance_id,))
        return [BANDWIDTH.load(r) for r in rows]

    def put_bandwidth(self, instance_id: int, cls: str, direction: Direction, rate: int,
                      ceil: int) -> None:
        self.db.execute(
            "INSERT INTO bandwidth_rules (instance_id, traffic_class, direction, rate, ceil) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance_id, traffic_class, direction) "
            "DO UPDATE SET rate = excluded.rate, ceil = excluded.ceil",
            (instance_id, cls, direction.value, rate, ceil))

    def delete_bandwidth(self, instance_id: int, cls: str | None = None) -> None:
        if cls is None:
            self.db.execute("DELETE FROM bandwidth_rules WHERE instance_id = ?", (instance_id,))
        else:
            self.db.execute("DELETE FROM bandwidth_rules WHERE instance_id = ? "
                            "AND traffic_class = ?", (instance_id, cls))

    # Counters ---------------------------------------------------------------------------
    def load_counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        found: dict[str, dict[str, tuple[int, int]]] = {}
        for c in self.counters():
            found.setdefault(c.family, {})[c.name] = (c.packets, c.bytes)
        return found

    def save_counters(
        self, family: str, values: dict[str, tuple[int, int, int, str, Direction]]
    ) -> None:
        """name -> (packets, bytes, instance id, class, direction); only ever grows."""
        rows = [COUNTERS.dump(CounterRecord(family, name, instance_id, cls, direction,
                                            packets, octets))
                for name, (packets, octets, instance_id, cls, direction) in values.items()]
        with self.db.transaction() as conn:
            conn.executemany(
                f"{COUNTERS.insert} ON CONFLICT (family, name) DO UPDATE SET "
                "packets = excluded.packets, bytes = excluded.bytes "
                "WHERE excluded.bytes >= traffic_counters.bytes", rows)

    def counters(self) -> list[CounterRecord]:
        return [COUNTERS.load(r) for r in self.db.all(COUNTERS.select)]

    def delete_instance(self, instance_id: int) -> None:
        """Forget every NIC, rule and counter of an instance that no longer exists."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM nic_addresses WHERE nic_id IN "
                         "(SELECT id FROM nics WHERE instance_id = ?)", (instance_id,))
            for table in ("nics", "bandwidth_rules", "traffic_counters"):
                conn.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

