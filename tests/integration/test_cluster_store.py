"""The etcd cluster store against a real 3-member etcd on loopback: names and ids unique
under concurrency, leases and offline members, one member lost, quorum lost."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from corral.cluster.etcd import ClusterUnavailable, EtcdClient
from corral.cluster.etcdstore import EtcdClusterStore
from corral.cluster.store import NodeInfo, PublishedInstance, PublishedTemplate
from corral.domain.errors import Conflict
from corral.host.pki import make_ca
from tests.integration.conftest import wait_until
from tests.integration.etcd_lab import ETCD, EtcdLab, etcd_lab

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd (etcd-server) is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdLab]:
    with etcd_lab(tmp_path_factory.mktemp("cluster-etcd")) as found:
        yield found


@pytest.fixture
def store(lab: EtcdLab) -> Iterator[EtcdClusterStore]:
    lab.wait_healthy()
    found = EtcdClusterStore(EtcdClient(lab.endpoints, timeout=2.0, tls=lab.tls), "node-a", ttl=3)
    found.client.delete("/corral/", prefix=True)
    assert found.create_cluster("node-a")
    try:
        yield found
    finally:
        found.destroy_cluster()
        found.close()


def other(lab: EtcdLab, node: str) -> EtcdClusterStore:
    client = EtcdClient(list(reversed(lab.endpoints)), timeout=2.0, tls=lab.tls)
    return EtcdClusterStore(client, node, ttl=3)


def test_a_second_cluster_cannot_take_a_used_store(store: EtcdClusterStore) -> None:
    assert store.exists()
    assert not store.create_cluster("node-b")


def test_concurrent_reservations_never_give_a_name_or_an_id_twice(
    store: EtcdClusterStore, lab: EtcdLab,
) -> None:
    """20 creates from 3 members for 5 names: each name once, every id distinct."""
    stores = [store, other(lab, "node-b"), other(lab, "node-c")]
    won: list[tuple[str, str, int]] = []
    lost: list[str] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        s = stores[i % 3]
        name = f"web{i % 5}"
        try:
            held = s.reserve(name, s.node, None)
        except Conflict as exc:
            with lock:
                lost.append(exc.message)
            return
        assert held.id is not None
        with lock:
            won.append((name, s.node, held.id))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(n for n, _, _ in won) == [f"web{i}" for i in range(5)]
        assert len({i for _, _, i in won}) == 5
        assert len(lost) == 15
        assert all("already exists" in m for m in lost)
    finally:
        for s in stores[1:]:
            s.close()


def test_released_ids_stay_out_of_use_for_the_quarantine(store: EtcdClusterStore) -> None:
    first = store.reserve("one", "node-a", timedelta(days=30))
    store.release("one", first.id, retire=True)
    second = store.reserve("two", "node-a", timedelta(days=30))
    assert second.id != first.id
    store.release("two", second.id, retire=False)  # never used: back at once
    again = store.reserve("two", "node-a", timedelta(days=30))
    assert again.id == second.id


def test_adopt_keeps_an_existing_instances_id_and_refuses_anothers_name(
    store: EtcdClusterStore,
) -> None:
    store.adopt("db1", "node-a", 150)
    store.adopt("db1", "node-a", 150)  # again: nothing changes
    with pytest.raises(Conflict, match="already exists"):
        store.adopt("db1", "node-b", 101)
    with pytest.raises(Conflict, match="held by 'db1'"):
        store.adopt("db2", "node-b", 150)
    assert store.held("node-a")["db1"][0] == 150


def test_a_member_that_stops_renewing_shows_offline_and_comes_back(
    store: EtcdClusterStore,
) -> None:
    store.register(NodeInfo("node-a", "https://a:8443", "ab:cd"))
    assert store.heartbeat({"load": [0.1]}) is True  # a new lease: reconcile
    assert store.heartbeat({"load": [0.2]}) is False
    [member] = store.members()
    assert member.online and member.facts == {"load": [0.2]}
    assert wait_until(lambda: not store.members()[0].online, 3 + 2)  # ttl 3 s, no renewal
    assert store.heartbeat({"load": [0.3]}) is True  # back: its lease made again
    assert store.members()[0].online


def test_published_instances_and_cordon(store: EtcdClusterStore) -> None:
    item = PublishedInstance("web1", 101, "ct", "running", "node-a", "tiny", {"cpus": 1})
    store.publish("node-a", [item], complete=True)
    store.publish("node-b", [PublishedInstance("db", 102, "vm", "stopped", "node-b", "tiny",
                                               {})], complete=True)
    assert [i.name for i in store.instances()] == ["web1", "db"]
    assert store.instances("node-a") == [item]
    store.publish("node-a", [], complete=True)
    assert store.instances("node-a") == []
    store.set_cordoned("node-b", True)
    assert store.is_cordoned("node-b") and not store.is_cordoned("node-a")
    store.set_cordoned("node-b", False)
    assert not store.is_cordoned("node-b")


def test_one_etcd_member_lost_changes_nothing_quorum_lost_fails_clearly(
    store: EtcdClusterStore, lab: EtcdLab,
) -> None:
    store.publish("node-a", [PublishedInstance("keep", 101, "ct", "running", "node-a",
                                               "tiny", {})], complete=True)
    first, second, third = lab.members
    lab.kill(first)
    try:
        held = store.reserve("after-one-lost", "node-a", None)  # still a majority
        assert held.id is not None
        lab.kill(second)
        with pytest.raises(ClusterUnavailable, match="lost quorum") as caught:
            store.reserve("after-quorum-lost", "node-a", None)
        assert "guests and local reads" in caught.value.message
        # a read that needs no agreement is still answered by the member left
        survivor = EtcdClusterStore(EtcdClient([third.client_url], timeout=2.0, tls=lab.tls),
                                    "node-a")
        assert [i.name for i in survivor.instances("node-a")] == ["keep"]
        survivor.close()
    finally:
        for member in (first, second):
            if member.name in lab.stopped:
                lab.start(member, state="existing")
        lab.wait_healthy()
    assert store.reserve("after-quorum-back", "node-a", None).id is not None


def test_etcd_lets_in_only_clients_with_a_certificate_of_its_ca(
    store: EtcdClusterStore, lab: EtcdLab, tmp_path: Path,
) -> None:
    """The member token (``/corral/secret``) sits in etcd: only a client the cluster CA
    signed may read it (etcd's --client-cert-auth), not one without a certificate, not one
    of another CA, not one speaking plain HTTP."""
    assert lab.tls is not None
    assert store.secret()  # the right certificate reads it
    url = lab.endpoints[0] + "/v3/kv/range"
    body = json.dumps({"key": "L2NvcnJhbC9zZWNyZXQ="}).encode()  # /corral/secret
    bare = ssl.create_default_context(cafile=str(lab.tls.ca))  # trusts etcd, no certificate
    with pytest.raises(OSError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5,
                               context=bare)
    # the handshake fails or (TLS 1.3: the client finishes first) the connection is reset
    # before any answer: never an HTTP reply
    assert not isinstance(refused.value, urllib.error.HTTPError)
    cause = refused.value
    if isinstance(cause, urllib.error.URLError):
        cause = cause.reason  # type: ignore[assignment]
    assert isinstance(cause, ssl.SSLError | ConnectionError), refused.value
    with pytest.raises(OSError):  # no TLS at all
        urllib.request.urlopen(url.replace("https://", "http://"), data=body, timeout=5)
    stranger = make_ca(tmp_path / "other", "mallory").issue_client("mallory")
    files = type(stranger)(lab.tls.ca.read_text(), stranger.cert, stranger.key).write(
        tmp_path / "mallory")
    intruder = EtcdClient(lab.endpoints, timeout=2.0, tls=files)
    try:
        with pytest.raises(ClusterUnavailable, match="TLS handshake failed"):
            intruder.get("/corral/secret")
    finally:
        intruder.close()


def test_templates_published_per_member_withdrawn_and_forgotten_with_it(
        store: EtcdClusterStore) -> None:
    def held(name: str | None = None) -> set[tuple[str, str, str]]:
        return {(t.name, t.node, t.sha256) for t in store.templates(name)}

    a = [PublishedTemplate("deb", "node-a", "1" * 64, 10, ("ct", "vm"), "3"),
         PublishedTemplate("tiny", "node-a", "2" * 64, 5)]
    store.publish_templates("node-a", a, complete=True)
    store.publish_templates("node-b", [PublishedTemplate("deb", "node-b", "1" * 64, 10)],
                            complete=False)
    assert held("deb") == {("deb", "node-a", "1" * 64), ("deb", "node-b", "1" * 64)}
    assert store.templates("tiny")[0] == a[1]  # read back as written
    store.publish_templates("node-a", a[:1], complete=True)  # tiny deleted while away
    assert held() == {("deb", "node-a", "1" * 64), ("deb", "node-b", "1" * 64)}
    store.withdraw_template("node-b", "deb")
    assert held() == {("deb", "node-a", "1" * 64)}
    store.unregister("node-a")
    assert held() == set()
