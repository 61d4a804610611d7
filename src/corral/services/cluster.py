"""Membership of a cluster: init, join, leave, status; this member's facts and instances
published under its lease; cluster-wide names and ids for creates; cordon.

The store is ``LocalClusterStore`` until the host is in a cluster, then ``EtcdClusterStore``
(``cluster/``); the rest of the services use ``reservations`` and ``store`` the same way in
both cases. The membership is ``STATE_DIR/cluster.json`` (endpoints, the local etcd member
if this host runs one, the offline delay): a restarted corrald rejoins by itself.

One thread (``cluster-heartbeat``) renews the lease every third of the offline delay and
publishes the facts; instance changes (events) are published at the next beat, and every
``RECONCILE_EVERY`` beats (and after coming back) the whole set is published again and the
names this member holds are checked against its database (what a missed event, a create that
failed while etcd was away, or a migration left).

TLS to etcd (``STATE_DIR/cluster-tls``, 0700): a local member is served over TLS with client
certificates under a cluster CA this host makes (``host/pki.py``; its key never leaves this
host); a joining host receives a client certificate over the pinned TLS join channel. An
external etcd brings its CA and a client certificate (``cluster init --etcd-ca …``); plain
``http://`` endpoints still work, with the warning "etcd without TLS".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corral import __version__
from corral.cluster.etcd import ClusterUnavailable, EtcdClient
from corral.cluster.etcdstore import EtcdClusterStore
from corral.cluster.local import LocalClusterStore, published
from corral.cluster.store import ClusterStore, Member, NodeInfo, PublishedInstance, Reservation
from corral.domain.errors import Conflict, HostFailure, InvalidInput, NotFound
from corral.domain.groups import Group, GroupRefused, refusal
from corral.host import etcd as local_etcd
from corral.host.pki import ClusterCA, Credentials, TLSFiles, make_ca
from corral.host.tls import fetch_certificate, fingerprint_of_pem, normalise_fingerprint
from corral.migration.peer import PeerClient, PeerError
from corral.services.events import EventBus
from corral.services.forwarding import Forwarder
from corral.services.placement import Placer
from corral.services.remotes import split_url
from corral.state.database import utcnow
from corral.state.migstore import RemoteRecord
from corral.state.store import StateStore

log = logging.getLogger("corral.cluster")

RECONCILE_EVERY = 10
"""Beats between full publications (30 s with the default 10 s offline delay)."""


@dataclass(frozen=True)
class Membership:
    endpoints: list[str]
    offline_after: int
    local_member: local_etcd.LocalMember | None
    joined_at: str
    tls: TLSFiles | None = None
    """The CA and client certificate Corral presents to etcd; None: none (plain http, or
    https checked against the system's CAs)."""

    def to_json(self) -> dict[str, Any]:
        return {"endpoints": self.endpoints, "offline_after": self.offline_after,
                "local_member": None if self.local_member is None
                else self.local_member.to_json(), "joined_at": self.joined_at,
                "tls": None if self.tls is None else self.tls.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Membership:
        member = data.get("local_member")
        tls = data.get("tls")
        return cls(list(data["endpoints"]), int(data.get("offline_after", 10)),
                   None if member is None else local_etcd.LocalMember.from_json(member),
                   str(data.get("joined_at", "")),
                   None if tls is None else TLSFiles.from_json(tls))

    def client(self, timeout: float = 5.0) -> EtcdClient:
        return EtcdClient(self.endpoints, timeout=timeout, tls=self.tls)

    @property
    def plain(self) -> list[str]:
        """The endpoints spoken to without TLS."""
        return [e for e in self.endpoints if urlsplit(e).scheme == "http"]


@dataclass(frozen=True)
class _Member:
    """A member reached for joining (what ``PeerClient`` needs of it)."""

    url: str
    token: str
    cert_pem: str
    name: str = "member"


def _listen_url(text: str, what: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidInput(f"{what} '{text}' must be HOST:PORT")
    return f"https://{host}:{port}"


def _check_endpoints(endpoints: list[str], credentials: Credentials | None) -> None:
    schemes = {urlsplit(url).scheme for url in endpoints}
    for url in endpoints:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise InvalidInput(f"etcd endpoint '{url}' must be http(s)://HOST:PORT")
    if len(schemes) > 1:
        raise InvalidInput("etcd endpoints mix http:// and https://: give all of them "
                           "one scheme")
    if credentials is not None and schemes == {"http"}:
        raise InvalidInput("--etcd-ca/--etcd-cert/--etcd-key need https:// etcd endpoints "
                           f"(given: {', '.join(endpoints)})")


PLAIN_WARNING = ("etcd without TLS ({}): the cluster's member token and members' "
                 "certificates cross the network in clear and anyone who reaches etcd can "
                 "read and change them; use https:// endpoints with a client certificate")


def _now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z"


class ClusterService:
    def __init__(
        self, state_dir: Path, node: str, store: StateStore, events: EventBus,
        facts: Callable[[], dict[str, Any]], quarantine: Callable[[], timedelta | None],
    ) -> None:
        self.state_dir = state_dir
        self.node = node
        self.config_file = state_dir / "cluster.json"
        self.tls_dir = state_dir / "cluster-tls"
        """The cluster CA (on the host that made the local etcd member), the member's
        certificate, and Corral's client certificate for etcd (0700, keys 0600)."""
        self.local_store = store
        self.events = events
        self.facts = facts
        self.quarantine = quarantine
        self.local = LocalClusterStore(store, node, state_dir)
        self.store: ClusterStore = self.local
        self.membership: Membership | None = None
        self.node_info: Callable[[], NodeInfo] = lambda: NodeInfo(node, None, None)
        """How other members reach this one (set by core from the remotes' TLS identity)."""
        self.last_error: str | None = None
        self.last_beat: float | None = None
        self._lock = threading.RLock()
        self._dirty: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscription = events.subscribe(self._wanted)
        self.forwarder = Forwarder(node, lambda: self.store, self.is_local,
                                   lambda _name: None)
        """Requests for other members' instances (services/forwarding.py); core sets its
        user look-up."""
        self.placer = Placer(node, self.members, self.forwarder, lambda: self.store.clustered)
        """Where a create without --node goes (services/placement.py)."""
        self.placer.store = lambda: self.store
        self.placer.own_features = lambda: dict(self.facts().get("features", {}))
        self.on_reconcile: list[Callable[[], None]] = []
        """Called after each full publication (the shared templates publish theirs)."""

    def is_local(self, ref: str) -> bool:
        try:
            self.local_store.get_instance(ref)
        except NotFound:
            return False
        return True

    # Start and stop ----------------------------------------------------------------------
    def start(self) -> None:
        """Rejoin the cluster recorded in cluster.json, if any."""
        if not self.config_file.exists():
            return
        membership = Membership.from_json(json.loads(self.config_file.read_text()))
        if membership.local_member is not None:
            try:
                local_etcd.ensure_running(membership.local_member)
            except HostFailure as exc:  # the beat keeps trying; local work goes on
                log.error("%s", exc.message)
        try:
            self._attach(membership)
        except HostFailure as exc:  # e.g. its TLS files are gone: this host runs alone
            self.last_error = exc.message
            log.error("cannot rejoin the cluster: %s", exc.message)
            return
        try:
            self.store.register(self._info(membership.joined_at))
        except ClusterUnavailable as exc:
            self.last_error = exc.message
            log.warning("cluster store not reachable at start: %s", exc.message)
        self._start_beat()

    def close(self) -> None:
        self._stop_beat()
        self._subscription.close()
        with self._lock:
            self.store.close()  # revokes the lease: shown offline at once

    def _attach(self, membership: Membership) -> None:
        ttl = membership.offline_after
        store = EtcdClusterStore(membership.client(timeout=max(2.0, ttl / 4)),
                                 self.node, ttl=ttl)
        with self._lock:
            self.store = store
            self.membership = membership

    def _info(self, joined_at: str) -> NodeInfo:
        info = self.node_info()
        return NodeInfo(self.node, info.url, info.fingerprint, info.cert_pem, joined_at)

    # Init, join, leave -------------------------------------------------------------------
    def init(self, endpoints: list[str], etcd_listen: str | None, peer_listen: str | None,
             offline_after: int,
             etcd_tls: tuple[str | None, str | None, str | None] = (None, None, None),
             ) -> dict[str, Any]:
        """Make this host the first member: of the etcd at ``endpoints`` (with ``etcd_tls``:
        the PEM CA, client certificate and key to speak to it), or of a local etcd member
        listening on ``etcd_listen`` (clients) and ``peer_listen`` (peers) over TLS with
        client certificates under a CA made here."""
        self._refuse_if_member()
        if any(etcd_tls) and not all(etcd_tls):
            raise InvalidInput("a client certificate for etcd needs all three: --etcd-ca, "
                               "--etcd-cert and --etcd-key")
        ca_pem, cert_pem, key_pem = etcd_tls
        credentials = None if not (ca_pem and cert_pem and key_pem) else Credentials(
            ca_pem, cert_pem, key_pem)
        if offline_after < 3:
            raise InvalidInput("--offline-after must be at least 3 seconds")
        if endpoints:
            _check_endpoints(endpoints, credentials)
            if credentials is not None:
                credentials.check()
        elif credentials is not None:
            raise InvalidInput("--etcd-ca/--etcd-cert/--etcd-key are for an external etcd "
                               "(--etcd https://…); the local member gets its own CA")
        member = None
        self._drop_tls()  # what a failed earlier attempt may have left
        try:
            tls = None
            if not endpoints:
                client_url = _listen_url(etcd_listen or "127.0.0.1:12379", "--etcd-listen")
                peer_url = _listen_url(peer_listen or "127.0.0.1:12380", "--etcd-peer-listen")
                tls = self._make_ca([client_url, peer_url])
                member = local_etcd.LocalMember(self.state_dir / "etcd", self.node,
                                                client_url, peer_url, self.tls_dir)
                local_etcd.ensure_running(member)
                endpoints = [member.client_url]
            elif credentials is not None:
                tls = credentials.write(self.tls_dir)
            membership = Membership(endpoints, offline_after, member, _now_iso(), tls)
            store = EtcdClusterStore(membership.client(), self.node, ttl=offline_after)
        except BaseException:
            self._forget_local(member)
            raise
        try:
            if not store.create_cluster(self.node):
                raise Conflict(f"the etcd at {', '.join(endpoints)} already holds a Corral "
                               "cluster: join it with `corral cluster join` instead")
            try:
                self._enter(store, membership)
            except BaseException:
                store.destroy_cluster()
                raise
        except BaseException:
            store.close()
            self._forget_local(member)
            raise
        return self.status()

    def _forget_local(self, member: local_etcd.LocalMember | None) -> None:
        """Undo a failed init: stop the local member, remove its data and the TLS files."""
        if member is not None:
            local_etcd.stop(member)
            import shutil
            shutil.rmtree(member.data_dir, ignore_errors=True)
        self._drop_tls()

    def _make_ca(self, urls: list[str]) -> TLSFiles:
        """The cluster CA, the local member's certificate (for the hosts it listens on, and
        loopback) and this host's client certificate."""
        ca = make_ca(self.tls_dir, self.node)
        hosts = [str(urlsplit(u).hostname) for u in urls] + ["127.0.0.1", "localhost"]
        ca.issue_member(self.node, hosts)
        return ca.issue_client(self.node).write(self.tls_dir)

    def _drop_tls(self) -> None:
        import shutil
        shutil.rmtree(self.tls_dir, ignore_errors=True)

    def join_info(self, joiner: str | None = None) -> dict[str, Any]:
        """What a joining host needs: the etcd endpoints, the offline delay, and the TLS
        credentials for etcd: a client certificate the cluster CA issues for ``joiner`` if
        this host holds the CA, else a copy of this member's own (with no RBAC in etcd,
        either is the same right: any client the CA signed may read and write)."""
        membership = self.membership
        if membership is None:
            raise InvalidInput(f"'{self.node}' is in no cluster: run `corral cluster init` "
                               "there first")
        credentials: Credentials | None = None
        ca = ClusterCA(self.tls_dir)
        if membership.local_member is not None and membership.tls is not None and ca.exists():
            credentials = ca.issue_client(joiner or "member")
        elif membership.tls is not None:
            credentials = membership.tls.read()
        return {"endpoints": membership.endpoints, "offline_after": membership.offline_after,
                "node": self.node,
                "etcd_tls": None if credentials is None else credentials.to_json()}

    def join_via(self, url: str, token: str, fingerprint: str | None) -> dict[str, Any]:
        """Join the cluster of the member at ``url``: its certificate is pinned (checked
        against ``fingerprint`` when given, as `remote add` does), ``token`` its API token."""
        self._refuse_if_member()
        host, port = split_url(url)
        if not token:
            raise InvalidInput("joining needs the member's API token (--token)")
        pem = fetch_certificate(host, port)
        seen = fingerprint_of_pem(pem)
        if fingerprint is not None and normalise_fingerprint(fingerprint) != seen:
            raise HostFailure(f"{url} presented certificate {seen}, not the expected "
                              f"{normalise_fingerprint(fingerprint)}: refusing to join")
        with PeerClient(_Member(url.rstrip("/"), token, pem), timeout=15.0) as peer:
            try:
                info = peer.request("GET", "/api/v1/cluster/join-info",
                                    params={"node": self.node})
            except PeerError as exc:
                if exc.peer_status == 401:
                    raise InvalidInput(f"{url} refused the token: {exc.message}") from exc
                if exc.peer_status == 400:
                    raise InvalidInput(exc.message) from exc
                raise
        return self.join(dict(info))

    def join(self, info: dict[str, Any]) -> dict[str, Any]:
        """Enter the cluster another member described (``join_info`` read over its pinned
        TLS API by the caller)."""
        self._refuse_if_member()
        endpoints = [str(e) for e in info.get("endpoints", [])]
        if not endpoints:
            raise HostFailure("the member answered no etcd endpoints")
        found = info.get("etcd_tls")
        credentials = None if not found else Credentials(
            str(found["ca"]), str(found["cert"]), str(found["key"]))
        _check_endpoints(endpoints, credentials)
        if credentials is not None:
            credentials.check()
        self._drop_tls()
        try:
            tls = None if credentials is None else credentials.write(self.tls_dir)
            membership = Membership(endpoints, int(info.get("offline_after", 10)), None,
                                    _now_iso(), tls)
            store = EtcdClusterStore(membership.client(), self.node,
                                     ttl=membership.offline_after)
        except BaseException:
            self._drop_tls()
            raise
        try:
            if not store.exists():
                raise HostFailure(f"the etcd at {', '.join(endpoints)} holds no Corral cluster")
            known = store.node_info(self.node)
            if known is not None:
                raise Conflict(f"the cluster already has a member named '{self.node}': start "
                               "this corrald with another --node, or make that one leave")
            self._enter(store, membership)
        except BaseException:
            store.close()
            self._drop_tls()
            raise
        return self.status()

    def _enter(self, store: EtcdClusterStore, membership: Membership) -> None:
        """Adopt this host's instances' names and ids, register, publish, start beating."""
        adopted: list[tuple[str, int]] = []
        try:
            for rec in self.local_store.list_instances():
                store.adopt(rec.name, self.node, rec.id)
                adopted.append((rec.name, rec.id))
            # ids deleted here stay in quarantine cluster-wide: the cluster would otherwise
            # hand one out, and this host's database (which still holds it back) refuse it
            store.retire_ids(dict(self.local_store.retired_ids()))
            store.register(self._info(membership.joined_at))
            store.heartbeat(self.facts())
            labels = self.local_store.all_labels()
            store.publish(self.node, [published(r, labels=labels)
                                      for r in self.local_store.list_instances()],
                          complete=True)
        except BaseException:
            with contextlib.suppress(Exception):
                store.unregister(self.node)
            raise
        self.config_file.write_text(json.dumps(membership.to_json(), indent=2) + "\n")
        with self._lock:
            self.store = store
            self.membership = membership
        self._after_reconcile()
        self.forwarder.forget()
        self._start_beat()
        log.info("joined the cluster at %s as '%s'", ", ".join(membership.endpoints),
                 self.node)

    def _refuse_if_member(self) -> None:
        if self.membership is not None:
            raise Conflict(f"'{self.node}' is already a member of a cluster "
                           f"({', '.join(self.membership.endpoints)}): leave it first")

    def leave(self) -> None:
        """Withdraw this member (its instances stay here, now a single host again)."""
        membership = self.membership
        if membership is None:
            raise InvalidInput(f"'{self.node}' is in no cluster")
        store = self.store
        if membership.local_member is not None:
            others = [m.node for m in store.members() if m.node != self.node]
            if others:
                raise Conflict(
                    f"the cluster's etcd runs on this host; the other members "
                    f"({', '.join(others)}) must leave first")
        self._stop_beat()
        try:
            store.unregister(self.node)
            last = not store.members()
            if (membership.local_member is not None or last) \
                    and isinstance(store, EtcdClusterStore):
                store.destroy_cluster()  # the last member: the etcd may host a new cluster
        except ClusterUnavailable:
            self._start_beat()
            raise
        store.close()
        if membership.local_member is not None:
            local_etcd.stop(membership.local_member)
            import shutil
            shutil.rmtree(membership.local_member.data_dir, ignore_errors=True)
        self._drop_tls()
        self.config_file.unlink(missing_ok=True)
        with self._lock:
            self.store = self.local
            self.membership = None
        self.forwarder.forget()
        log.info("left the cluster")

    # Reading -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        membership = self.membership
        if membership is None:
            return {"clustered": False, "node": self.node, "endpoints": [], "members": 1,
                    "online": 1, "leader": self.node, "offline_after": None,
                    "local_etcd": False, "etcd": {}, "error": None, "tls": False,
                    "client_cert": False, "warnings": []}
        etcd_health: dict[str, str] = {}
        store = self.store
        if isinstance(store, EtcdClusterStore):
            etcd_health = store.client.endpoint_health()
        try:
            members = store.members()
            leader = store.leader()
            error = None
        except ClusterUnavailable as exc:
            members, leader, error = [], None, exc.message
        return {"clustered": True, "node": self.node, "endpoints": membership.endpoints,
                "members": len(members), "online": sum(m.online for m in members),
                "leader": leader, "offline_after": membership.offline_after,
                "local_etcd": membership.local_member is not None, "etcd": etcd_health,
                "error": error or self.last_error, "tls": not membership.plain,
                "client_cert": membership.tls is not None, "warnings": self.warnings()}

    def warnings(self) -> list[str]:
        """What `cluster status` and `host info` warn of (etcd spoken to in clear)."""
        membership = self.membership
        if membership is None or not membership.plain:
            return []
        return [PLAIN_WARNING.format(", ".join(membership.plain))]

    def members(self) -> list[Member]:
        return self.store.members()

    def remote_instances(self, node: str | None = None) -> list[PublishedInstance]:
        """Instances other members published (this host's own come from its database).
        If the store cannot be read, none: local reads go on (the list says so in logs)."""
        if not self.store.clustered or node == self.node:
            return []
        try:
            found = self.store.instances(node)
        except ClusterUnavailable as exc:
            log.warning("listing other members' instances: %s", exc.message)
            return []
        return [i for i in found if i.node != self.node]

    def node_exists(self, node: str) -> bool:
        return node == self.node or any(m.node == node for m in self.store.members())

    # Cordon ------------------------------------------------------------------------------
    def set_cordoned(self, node: str, cordoned: bool) -> None:
        if not self.node_exists(node):
            raise NotFound(f"no member named '{node}'")
        self.store.set_cordoned(node, cordoned)

    # Reservations (InstanceService) ------------------------------------------------------
    def reserve(self, name: str) -> Reservation:
        store = self.store
        if store.is_cordoned(self.node):
            raise Conflict(f"'{self.node}' is cordoned: no new instances here "
                           f"(`corral host uncordon {self.node}`)")
        return store.reserve(name, self.node, self.quarantine())

    def release(self, name: str, instance_id: int | None, retire: bool) -> None:
        try:
            self.store.release(name, instance_id, retire)
        except ClusterUnavailable as exc:  # the next reconcile gives it back
            log.warning("could not release '%s' in the cluster store: %s", name, exc.message)
        try:
            self.store.leave_groups(name)
        except ClusterUnavailable as exc:  # its entry lapses when the name is not held
            log.warning("could not take '%s' out of its placement group: %s", name,
                        exc.message)

    def group_of(self, name: str) -> Group | None:
        """``name``'s placement group; None also when the store cannot be read (`info`
        goes on without it)."""
        try:
            return self.store.group_of(name)
        except ClusterUnavailable:
            return None

    def check_move(self, name: str, target: str, together: bool) -> None:
        """Refuse migrating ``name`` to member ``target`` if its placement group forbids it
        (a paired remote that is no member: the instance leaves the cluster, no rule)."""
        if not self.store.clustered or target == self.node or not self.node_exists(target):
            return
        group = self.store.group_of(name)
        if group is None:
            return
        why = refusal(group, name, target, self.node if together else None)
        if why is not None:
            raise GroupRefused(f"cannot migrate '{name}' to '{target}': {why}")

    def hand_over(self, name: str, instance_id: int) -> None:
        try:
            self.store.move(name, instance_id, self.node)
        except ClusterUnavailable as exc:  # the next reconcile adopts it
            log.warning("could not take over '%s' in the cluster store: %s", name, exc.message)
        self._dirty.add(name)

    def ids_shared(self) -> bool:
        return self.store.clustered

    def member_remote(self, name: str) -> RemoteRecord | None:
        """A member as a migration target (``migrate NAME MEMBER``): its published URL and
        certificate, the members' token; None if ``name`` is no other member."""
        if name == self.node or not self.store.clustered:
            return None
        try:
            info = self.store.node_info(name)
            secret = self.forwarder.secret()
        except ClusterUnavailable:
            return None
        if info is None or info.url is None or info.cert_pem is None or secret is None:
            return None
        return RemoteRecord(name, info.url, secret, info.fingerprint or "", info.cert_pem,
                            utcnow())

    # Heartbeat ---------------------------------------------------------------------------
    def _wanted(self, type_: str, _data: dict[str, Any]) -> bool:
        return type_.startswith("instance.")

    def _start_beat(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_loop, name="cluster-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _stop_beat(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=30)

    def _beat_loop(self) -> None:
        beats = 0
        while not self._stop.is_set():
            membership = self.membership
            if membership is None:
                return
            interval = max(1.0, membership.offline_after / 3)
            self._drain_events()
            try:
                self.beat(full=beats % RECONCILE_EVERY == 0)
                beats += 1
            except ClusterUnavailable as exc:
                self.last_error = exc.message
                log.warning("cluster heartbeat: %s", exc.message)
            except Exception:
                log.exception("cluster heartbeat failed")
            self._stop.wait(interval)

    def _drain_events(self) -> None:
        while True:
            event = self._subscription.get(timeout=0)
            if event is None:
                return
            if event.instance:
                self._dirty.add(event.instance)

    def beat(self, full: bool = False) -> None:
        """Renew the lease with fresh facts; publish what changed (everything if ``full``
        or after coming back)."""
        store = self.store
        reborn = store.heartbeat(self.facts())
        self.last_beat = time.time()
        if reborn or full:
            self.reconcile()
        else:
            dirty, self._dirty = self._dirty, set()
            self._publish(dirty)
        self.last_error = None

    def _publish(self, names: set[str]) -> None:
        if not names:
            return
        rows = {r.name: r for r in self.local_store.list_instances()}
        labels = self.local_store.all_labels()
        found = [published(rows[n], labels=labels) for n in names if n in rows]
        self.store.publish(self.node, found, complete=False)
        for name in names - rows.keys():
            self.store.withdraw(self.node, name)

    def reconcile(self) -> None:
        """Publish every instance again and make the names this member holds match its
        database: adopt the unheld (created while away, migrated in), release the stale
        (deleted while away, migrated out) once older than a reservation can be."""
        self._dirty.clear()
        store = self.store
        rows = self.local_store.list_instances()
        for rec in rows:
            try:
                store.adopt(rec.name, self.node, rec.id)
            except Conflict as exc:
                log.error("instance %s: %s", rec.name, exc.message)
        if isinstance(store, EtcdClusterStore):
            present = {r.name for r in rows}
            cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)
            for name, (instance_id, at) in store.held(self.node).items():
                if name not in present and (at is None or at < cutoff):
                    store.release(name, instance_id, retire=True)
        labels = self.local_store.all_labels()
        store.publish(self.node, [published(r, labels=labels) for r in rows], complete=True)
        self._after_reconcile()

    def _after_reconcile(self) -> None:
        for hook in self.on_reconcile:
            try:
                hook()
            except ClusterUnavailable as exc:
                self.last_error = exc.message
                log.warning("cluster reconcile: %s", exc.message)
            except Exception:
                log.exception("cluster reconcile hook failed")


def default_facts(capacity: Callable[[], dict[str, Any]], features: Callable[[], dict[str, Any]],
                  pools: Callable[[], list[str]], instances: Callable[[], int],
                  kinds: Callable[[], list[str]]) -> Callable[[], dict[str, Any]]:
    """The facts a member publishes with every beat."""
    def facts() -> dict[str, Any]:
        found = features()
        accel = found.get("vm_accelerator", {})
        return {
            "version": __version__,
            "capacity": capacity(),
            "features": {
                "vm": accel.get("accel", "none") if isinstance(accel, dict) else "none",
                "criu": _available(found.get("criu")),
                "vlan": _available(found.get("vlan")),
                "drivers": found.get("drivers"),
                "kinds": kinds(),
            },
            "pools": pools(),
            "load": list(os.getloadavg()),
            "instances": instances(),
            "published_at": _now_iso(),
        }
    return facts


def _available(value: Any) -> bool:
    return bool(value.get("available")) if isinstance(value, dict) else bool(value)
