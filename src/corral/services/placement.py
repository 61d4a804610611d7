"""Where a new instance goes in a cluster: `create` without `--node` picks a member.

Candidates are the members online and not cordoned that run the kind (a VM needs QEMU:
their published ``features.kinds``) and whose published capacity has room for the asked
CPUs and memory under their own over-commit policy; the order is fewest instances, then
members already holding the template (no first-use fetch; only a tie-breaker: it never
outweighs a member's load), then most free memory. The create is tried on the first and,
when that member refuses it as over-committed (its facts were a beat old), on the next.

Why this is safe under concurrency without a capacity ledger in etcd: the member itself
admits the create under its accounting lock (``CapacityService.admit``), so it never goes
over its policy whatever the placer believed; the name and id are reserved cluster-wide by
an etcd transaction before the row exists. The placer also counts what it sent since the
last facts, so concurrent creates through one member spread instead of all trying the same.

Two more filters, both hard rules:

* ``require``: features the member must publish (``criu``: a passing CRIU check, ``kvm``,
  ``vlan``) -- a create asking ``--require criu`` lands only where checkpoints work;
* a placement group (``domain/groups.py``): the candidates are those its rule allows, and the
  chosen member is written into the group by a compare-and-swap transaction *before* the
  create is sent (``ClusterStore.join_group``), so two creates racing into an anti-affinity
  group cannot both take one member; a refused or failed create leaves the group again.

Evacuation and ``migrate --selector … auto`` use ``pick``: the same filters for a moving
instance, its group's rule included, and for a container members with CRIU first (the
checkpoint path needs it).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.cluster.store import ClusterStore, Member
from corral.domain.errors import Conflict, CorralError, InvalidInput, NotFound, Unsupported
from corral.domain.groups import Group, GroupRefused, allowed, unplaceable
from corral.domain.sizes import parse_size
from corral.domain.users import Caller
from corral.services.forwarding import Forwarded, Forwarder
from corral.state.store import InstanceRecord, OperationRecord


class NoRoom(Conflict):
    code = "overcommitted"


FEATURES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "criu": lambda f: f.get("criu") is True,
    "kvm": lambda f: f.get("vm") == "kvm",
    "vlan": lambda f: f.get("vlan") is True,
}
"""What ``require`` may name, and how a member's published ``features`` show it."""


def check_requires(requires: tuple[str, ...]) -> None:
    for name in requires:
        if name not in FEATURES:
            raise InvalidInput(f"unknown required feature '{name}': one of "
                               f"{', '.join(sorted(FEATURES))}")


def missing(features: Any, requires: tuple[str, ...]) -> list[str]:
    """The required features a member's published ``features`` lack."""
    found = features if isinstance(features, dict) else {}
    return [name for name in requires if not FEATURES[name](found)]


@dataclass(frozen=True)
class Ask:
    kind: str
    cpus: int
    memory: int
    requires: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    """Features that put a member first when it has them (not required)."""
    template: str | None = None
    """The template asked for (members holding it win ties: no first-use fetch)."""

    @classmethod
    def of(cls, body: dict[str, Any]) -> Ask:
        cpus = body.get("cpus")
        memory = body.get("memory")
        template = body.get("template")
        return cls(str(body.get("type", "")), int(cpus) if cpus not in (None, "") else 0,
                   parse_size(str(memory)) if memory not in (None, "") else 0,
                   requirements(body), template=str(template) if template else None)


def requirements(body: dict[str, Any]) -> tuple[str, ...]:
    """A create body's required features (checked: InvalidInput names an unknown one)."""
    requires = tuple(sorted({str(r).lower() for r in body.get("require") or ()}))
    check_requires(requires)
    return requires


def _free(entry: Any) -> float:
    """Room left under the policy for one resource (inf: no maximum, or not said)."""
    if not isinstance(entry, dict) or entry.get("max_ratio") is None:
        return math.inf
    return float(entry["max_ratio"]) * float(entry.get("physical") or 0) \
        - float(entry.get("allocated") or 0)


def candidates(members: list[Member], ask: Ask, sent: dict[str, tuple[int, int, int]],
               holders: frozenset[str] = frozenset()) -> list[str]:
    """Member names in the order to try (``sent``: cpus, memory, count placed since;
    ``holders``: the members holding the asked template)."""
    found = []
    for m in members:
        if not m.online or m.cordoned:
            continue
        features = m.facts.get("features", {})
        kinds = features.get("kinds") if isinstance(features, dict) else None
        if kinds is not None and ask.kind not in kinds:
            continue
        if missing(features, ask.requires):
            continue
        capacity = m.facts.get("capacity", {})
        extra_cpu, extra_memory, extra_count = sent.get(m.node, (0, 0, 0))
        free_cpu = _free(capacity.get("cpu")) - extra_cpu
        free_memory = _free(capacity.get("memory")) - extra_memory
        if free_cpu < ask.cpus or free_memory < ask.memory:
            continue
        count = int(m.facts.get("instances", 0)) + extra_count
        lacking = len(missing(features, ask.prefer))
        found.append((lacking, count, m.node not in holders, -free_memory, m.node))
    return [node for *_key, node in sorted(found)]


def move_ask(rec: InstanceRecord) -> Ask:
    """What a moving instance needs of its new member: room for it and, for a container,
    CRIU preferred (its checkpoint path; without it the container is moved stopped)."""
    return Ask(rec.kind.value, rec.resources.cpus, rec.resources.memory,
               prefer=("criu",) if rec.kind.value == "ct" else ())


class Placer:
    def __init__(self, node: str, members: Callable[[], list[Member]], forwarder: Forwarder,
                 clustered: Callable[[], bool]) -> None:
        self.node = node
        self.members = members
        self.forwarder = forwarder
        self.clustered = clustered
        self.store: Callable[[], ClusterStore] | None = None
        """The cluster store (placement groups); set by ClusterService."""
        self.own_features: Callable[[], dict[str, Any]] = lambda: {}
        """This host's published features (``require`` on a host in no cluster)."""
        self._sent: dict[str, tuple[int, int, int]] = {}
        self._seen: dict[str, str] = {}  # node -> published_at of the facts _sent is over
        self.holders: Callable[[str], set[str]] = lambda template: set()
        """The members holding a template (set by the daemon's wiring: shared templates)."""
        self._lock = threading.Lock()

    def _group(self, name: Any) -> Group | None:
        if name in (None, "") or self.store is None:
            return None
        return self.store().group(str(name))

    def create(self, body: dict[str, Any], caller: Caller,
               here: Callable[[], OperationRecord]) -> OperationRecord | Forwarded:
        """Run the create ``body`` asks for on the member it names or placement picks:
        ``here`` runs it on this host; elsewhere it is forwarded (its answer returned)."""
        wanted = body.get("node")
        requires = requirements(body)
        group = self._group(body.get("group"))
        name = str(body.get("name"))
        clustered = self.clustered()
        if not clustered and wanted not in (None, self.node):
            raise NotFound(f"no member named '{wanted}': this host is in no cluster")
        if not clustered or wanted == self.node:
            lacking = missing(self.own_features(), requires) if requires else []
            if lacking:
                raise Unsupported(f"'{self.node}' lacks {', '.join(lacking)} (asked by "
                                  "--require): `corral host info` says why")
            return self._in_group(group, name, self.node, here)
        members = self.members()
        if wanted is not None:
            chosen = next((m for m in members if m.node == wanted), None)
            if chosen is None:
                raise NotFound(f"no member named '{wanted}'")
            lacking = missing(chosen.facts.get("features"), requires)
            if lacking:
                raise Unsupported(f"member '{wanted}' lacks {', '.join(lacking)} (asked by "
                                  "--require)")
            order = [str(wanted)]
        else:
            ask = Ask.of(body)
            holders = frozenset(self.holders(ask.template)) if ask.template else frozenset()
            with self._lock:
                self._forget_stale(members)
                order = candidates(members, ask, dict(self._sent), holders)
            if not order:
                raise NoRoom(f"no member can take {ask.kind} '{name}': none is "
                             "online, uncordoned, able to run it"
                             + (f" (with {', '.join(ask.requires)})" if ask.requires else "")
                             + " and with room under its policy (`corral cluster members`)")
            if group is not None:
                order = allowed(group, name, order)
                if not order:
                    raise NoRoom(unplaceable(group, name))
        refusals = []
        for node in order:
            def attempt(n: str = node) -> OperationRecord | Forwarded:
                return here() if n == self.node else self._send(n, body, caller)

            try:
                done = self._in_group(group, name, node, attempt)
            except GroupRefused as exc:
                if wanted is not None:
                    raise
                refusals.append(f"{node}: {exc.message}")
                continue
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

    def _in_group(self, group: Group | None, name: str, node: str,
                  create: Callable[[], OperationRecord | Forwarded]
                  ) -> OperationRecord | Forwarded:
        """Run ``create`` with ``name`` held in ``group`` on ``node`` (its rule checked and
        the place taken in one transaction); a refused create leaves the group again."""
        if group is None or self.store is None:
            return create()
        store = self.store()
        store.join_group(group.name, name, node)
        try:
            done = create()
        except BaseException:
            store.leave_groups(name)
            raise
        if isinstance(done, Forwarded) and done.status >= 400:
            store.leave_groups(name)
        return done

    def pick(self, ask: Ask, leaving: str, name: str | None = None) -> str:
        """The member an instance leaving member ``leaving`` goes to (evacuation, migrate
        to "auto"), counted as sent until the next facts; NoRoom if none can take it.
        ``name``: the instance, whose placement group's rule the choice keeps."""
        members = [m for m in self.members() if m.node != leaving]
        with self._lock:
            self._forget_stale(members)
            order = candidates(members, ask, dict(self._sent))
        if not order:
            raise NoRoom(f"no other member can take this {ask.kind} ({ask.cpus} CPU, "
                         f"{ask.memory // (1024 * 1024)} MiB): none is online, uncordoned, "
                         "able to run it and with room under its policy")
        group = None if name is None or self.store is None else self.store().group_of(name)
        if group is not None:
            order = allowed(group, name or "", order, source=leaving)
            if not order:
                raise NoRoom(f"no other member can take '{name}' without breaking its "
                             f"placement group: {unplaceable(group, name or '')}")
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
