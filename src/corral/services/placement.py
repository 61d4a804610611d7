"""Where a new instance goes in a cluster: `create` without `--node` picks a member.

Candidates are the members online and not cordoned that run the kind (a VM needs QEMU:
their published ``features.kinds``) and whose published capacity has room for the asked
CPUs and memory under their own over-commit policy; the order is fewest instances, then most
free memory. The create is tried on the first and, when that member refuses it as
over-committed (its facts were a beat old), on the next.

Why this is safe under concurrency without a capacity ledger in etcd: the member itself
admits the create under its accounting lock (``CapacityService.admit``), so it never goes
over its policy whatever the placer believed; the name and id are reserved cluster-wide by
an etcd transaction before the row exists. The placer also counts what it sent since the
last facts, so concurrent creates through one member spread instead of all trying the same.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.cluster.store import Member
from corral.domain.errors import Conflict, CorralError, NotFound
from corral.domain.sizes import parse_size
from corral.domain.users import Caller
from corral.services.forwarding import Forwarded, Forwarder
from corral.state.store import OperationRecord


class NoRoom(Conflict):
    code = "overcommitted"


@dataclass(frozen=True)
class Ask:
    kind: str
    cpus: int
    memory: int

    @classmethod
    def of(cls, body: dict[str, Any]) -> Ask:
        cpus = body.get("cpus")
        memory = body.get("memory")
        return cls(str(body.get("type", "")), int(cpus) if cpus not in (None, "") else 0,
                   parse_size(str(memory)) if memory not in (None, "") else 0)


def _free(entry: Any) -> float:
    """Room left under the policy for one resource (inf: no maximum, or not said)."""
    if not isinstance(entry, dict) or entry.get("max_ratio") is None:
        return math.inf
    return float(entry["max_ratio"]) * float(entry.get("physical") or 0) \
        - float(entry.get("allocated") or 0)


def candidates(members: list[Member], ask: Ask, sent: dict[str, tuple[int, int, int]]
               ) -> list[str]:
    """Member names in the order to try (``sent``: cpus, memory, count placed since)."""
    found = []
    for m in members:
        if not m.online or m.cordoned:
            continue
        features = m.facts.get("features", {})
        kinds = features.get("kinds") if isinstance(features, dict) else None
        if kinds is not None and ask.kind not in kinds:
            continue
        capacity = m.facts.get("capacity", {})
        extra_cpu, extra_memory, extra_count = sent.get(m.node, (0, 0, 0))
        free_cpu = _free(capacity.get("cpu")) - extra_cpu
        free_memory = _free(capacity.get("memory")) - extra_memory
        if free_cpu < ask.cpus or free_memory < ask.memory:
            continue
        count = int(m.facts.get("instances", 0)) + extra_count
        found.append((count, -free_memory, m.node))
    return [node for _count, _free_memory, node in sorted(found)]


class Placer:
    def __init__(self, node: str, members: Callable[[], list[Member]], forwarder: Forwarder,
                 clustered: Callable[[], bool]) -> None:
        self.node = node
        self.members = members
        self.forwarder = forwarder
        self.clustered = clustered
        self._sent: dict[str, tuple[int, int, int]] = {}
        self._seen: dict[str, str] = {}  # node -> published_at of the facts _sent is over
        self._lock = threading.Lock()

    def create(self, body: dict[str, Any], caller: Caller,
               here: Callable[[], OperationRecord]) -> OperationRecord | Forwarded:
        """Run the create ``body`` asks for on the member it names or placement picks:
        ``here`` runs it on this host; elsewhere it is forwarded (its answer returned)."""
        wanted = body.get("node")
        if not self.clustered():
            if wanted not in (None, self.node):
                raise NotFound(f"no member named '{wanted}': this host is in no cluster")
            return here()
        if wanted == self.node:
            return here()
        members = self.members()
        if wanted is not None:
            if wanted not in {m.node for m in members}:
                raise NotFound(f"no member named '{wanted}'")
            order = [str(wanted)]
        else:
            ask = Ask.of(body)
            with self._lock:
                self._forget_stale(members)
                order = candidates(members, ask, dict(self._sent))
            if not order:
                raise NoRoom(f"no member can take {ask.kind} '{body.get('name')}': none is "
                             "online, uncordoned, able to run it and with room under its "
                             "policy (`corral cluster members`)")
        refusals = []
        for node in order:
            try:
                done = here() if node == self.node else self._send(node, body, caller)
            except NoRoom as exc:
                refusals.append(f"{node}: {exc.message}")
                continue
            except CorralError as exc:
                if exc.code != "overcommitted" or wanted is not None:
                    raise
                refusals.append(f"{node}: {exc.message}")
                continue
            if wanted is None:
                self._count(node, Ask.of(body))
            return done
        raise NoRoom("no member had room: " + "; ".join(refusals))

    def pick(self, ask: Ask, leaving: str) -> str:
        """The member an instance leaving member ``leaving`` goes to (evacuation), counted
        as sent until the next facts; NoRoom if none can take it."""
        members = [m for m in self.members() if m.node != leaving]
        with self._lock:
            self._forget_stale(members)
            order = candidates(members, ask, dict(self._sent))
        if not order:
            raise NoRoom(f"no other member can take this {ask.kind} ({ask.cpus} CPU, "
                         f"{ask.memory // (1024 * 1024)} MiB): none is online, uncordoned, "
                         "able to run it and with room under its policy")
        self._count(order[0], ask)
        return order[0]

    def _send(self, node: str, body: dict[str, Any], caller: Caller) -> Forwarded:
        info = next((m.info for m in self.members() if m.node == node), None)
        if info is None:
            raise NotFound(f"no member named '{node}'")
        answer = self.forwarder.forward(
            info, "POST", "/api/v1/instances", "", json.dumps({**body, "node": node}).encode(),
            "application/json", caller)
        if answer.status == 409:
            try:
                error = json.loads(answer.body)
            except ValueError:
                error = {}
            if error.get("error") == "overcommitted":
                raise NoRoom(str(error.get("message", "over-committed")))
        return answer

    def _count(self, node: str, ask: Ask) -> None:
        with self._lock:
            cpu, memory, count = self._sent.get(node, (0, 0, 0))
            self._sent[node] = (cpu + ask.cpus, memory + ask.memory, count + 1)

    def _forget_stale(self, members: list[Member]) -> None:
        """Fresh facts include what was sent before them: start counting again."""
        for m in members:
            stamp = str(m.facts.get("published_at", ""))
            if self._seen.get(m.node) != stamp:
                self._seen[m.node] = stamp
                self._sent.pop(m.node, None)
