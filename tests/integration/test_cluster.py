"""Three corrald (fake driver) as one cluster on a real 3-member etcd: join, members,
names unique cluster-wide, list across members, a killed member offline and back, one etcd
member lost, quorum lost, cordon, leave; and a one-host cluster on a local etcd member."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from corral.client import ApiError
from corral.wire.models import CreateRequest
from tests.integration.conftest import (
    Daemon,
    free_port,
    start_daemon,
    stop_daemon,
    wait_until,
    write_fake_template,
)
from tests.integration.etcd_lab import ETCD, EtcdLab, etcd_lab, leader_of

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd (etcd-server) is not installed")


@dataclass
class Lab:
    etcd: EtcdLab
    hosts: dict[str, Daemon]
    root: Path

    def restart(self, node: str) -> Daemon:
        old = self.hosts[node]
        port = int(old.url.rsplit(":", 1)[1])
        self.hosts[node] = start_daemon(old.state_dir, node=node, port=port)
        return self.hosts[node]


def corral(d: Daemon, *args: str, ok: bool = True) -> Any:
    proc = d.cli(*args)
    if ok and proc.returncode != 0:
        raise AssertionError(f"corral {' '.join(args)}: {proc.stderr}")
    if not ok:
        assert proc.returncode != 0, proc.stdout
        return proc.stderr
    return json.loads(proc.stdout) if "--format" in args else proc.stdout


def members(d: Daemon) -> dict[str, dict[str, Any]]:
    return {m["node"]: m for m in corral(d, "cluster", "members", "--format", "json")}


def names(d: Daemon, *extra: str) -> dict[str, str]:
    return {i["name"]: i["node"] for i in corral(d, "list", "--format", "json", *extra)}


def listed(d: Daemon, want: dict[str, str]) -> bool:
    return wait_until(lambda: names(d) == want, 10)


def create(d: Daemon, name: str, node: str | None = None) -> None:
    corral(d, "create", name, "--type", "ct", "--template", "tiny",
           *(("--node", node) if node else ()))


def here(d: Daemon, name: str) -> None:
    """Create on ``d`` itself (without --node placement may put it on any member)."""
    create(d, name, d.state_dir.name)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("cluster-lab")
    with etcd_lab(root / "etcd") as etcd:
        hosts: dict[str, Daemon] = {}
        try:
            for node in ("alpha", "beta", "gamma"):
                write_fake_template(root / node / "templates")
                hosts[node] = start_daemon(root / node, node=node)
            yield Lab(etcd, hosts, root)
        finally:
            for d in hosts.values():
                stop_daemon(d)


def test_init_join_members_and_names_across_the_cluster(lab: Lab) -> None:
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    here(beta, "before")  # an instance made before joining keeps its name and id
    before_id = corral(beta, "info", "before", "--format", "json")["id"]
    assert corral(alpha, "cluster", "status", "--format", "json")["clustered"] is False
    status = corral(alpha, "cluster", "init", "--etcd", ",".join(lab.etcd.endpoints),
                    *lab.etcd.cli_tls, "--format", "json")
    assert status["clustered"] and status["members"] == 1
    error = corral(beta, "cluster", "join", alpha.url, "--token", "wrong", ok=False)
    assert "refused the token" in error
    error = corral(beta, "cluster", "join", alpha.url, "--token", alpha.token,
                   "--fingerprint", "ab" * 32, ok=False)
    assert "refusing to join" in error
    corral(beta, "cluster", "join", alpha.url, "--token", alpha.token)
    corral(gamma, "cluster", "join", beta.url, "--token", beta.token)
    error = corral(gamma, "cluster", "join", beta.url, "--token", beta.token, ok=False)
    assert "already a member" in error
    found = members(gamma)
    assert sorted(found) == ["alpha", "beta", "gamma"]
    assert all(m["online"] for m in found.values())
    assert found["beta"]["facts"]["instances"] == 1
    assert found["alpha"]["url"] == alpha.url and found["alpha"]["fingerprint"]

    here(alpha, "web1")
    error = corral(gamma, "create", "web1", "--type", "ct", "--template", "tiny", ok=False)
    assert "already exists" in error and "alpha" in error
    error = corral(alpha, "create", "before", "--type", "ct", "--template", "tiny", ok=False)
    assert "already exists" in error and "beta" in error
    here(gamma, "db1")
    ids = {corral(d, "info", n, "--format", "json")["id"]
           for d, n in ((alpha, "web1"), (gamma, "db1"), (beta, "before"))}
    assert len(ids) == 3 and before_id in ids  # ids unique cluster-wide, the old one kept

    want = {"web1": "alpha", "before": "beta", "db1": "gamma"}
    for d in (alpha, beta, gamma):  # published on change, read from the store
        assert listed(d, want), names(d)
    assert names(beta, "--node", "gamma") == {"db1": "gamma"}
    assert names(beta, "--node", "beta") == {"before": "beta"}
    table = corral(alpha, "list")
    assert "NODE" in table and "gamma" in table
    corral(gamma, "start", "db1")
    assert wait_until(lambda: corral(alpha, "list", "--format", "json", "--node", "gamma")
                      [0]["state"] == "running", 10)
    corral(gamma, "stop", "db1")
    corral(gamma, "delete", "db1")
    assert wait_until(lambda: "db1" not in names(alpha), 10)
    here(alpha, "db1")  # the name is free again cluster-wide


def test_requests_for_another_members_instance_are_forwarded(lab: Lab) -> None:
    """info/start/exec/stop of beta's instance from alpha; a user keeps its identity
    (mapped by name to beta's user of that name), another user sees nothing."""
    alpha, beta = lab.hosts["alpha"], lab.hosts["beta"]
    info = corral(alpha, "info", "before", "--format", "json")
    assert info["node"] == "beta" and info["state"] == "stopped"
    corral(alpha, "start", "before")
    assert corral(beta, "info", "before", "--format", "json")["state"] == "running"
    assert "forwarded" in corral(alpha, "exec", "before", "--", "echo", "forwarded")
    corral(alpha, "stop", "before", "--force")
    assert corral(beta, "info", "before", "--format", "json")["state"] == "stopped"
    error = corral(alpha, "start", "nowhere", ok=False)
    assert "nowhere" in error  # unknown everywhere: this host's plain 404

    tokens = {}
    for d in (alpha, beta):
        for user in ("tenant", "other"):
            tokens[d.state_dir.name, user] = corral(d, "user", "add", user).strip() \
                .splitlines()[-1]
    corral(beta, "owner", "before", "tenant")
    as_tenant = alpha.cli("info", "before", "--format", "json",
                          env={"CORRAL_TOKEN": tokens["alpha", "tenant"]})
    assert as_tenant.returncode == 0, as_tenant.stderr
    assert json.loads(as_tenant.stdout)["owner"] == "tenant"
    as_other = alpha.cli("info", "before", env={"CORRAL_TOKEN": tokens["alpha", "other"]})
    assert as_other.returncode != 0 and "before" in as_other.stderr  # 404, as if missing
    corral(beta, "owner", "before", "--none")
    for d in (alpha, beta):
        for user in ("tenant", "other"):
            corral(d, "user", "remove", user)


def test_migrate_to_a_member_by_name_keeps_name_and_id(lab: Lab) -> None:
    """Asked on beta, run by alpha (the owner), to gamma (a member: no `remote add`)."""
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    here(alpha, "mover")
    before = corral(alpha, "info", "mover", "--format", "json")
    corral(beta, "migrate", "mover", "gamma")
    after = corral(gamma, "info", "mover", "--format", "json")
    assert (after["id"], after["node"]) == (before["id"], "gamma")
    assert listed(beta, {**names(beta), "mover": "gamma"})
    assert corral(alpha, "info", "mover", "--format", "json")["node"] == "gamma"  # forwarded
    error = corral(alpha, "remote", "add", "gamma", gamma.url, "--token", gamma.token,
                   ok=False)
    assert "member" in error
    corral(alpha, "delete", "mover")  # forwarded to gamma
    assert wait_until(lambda: "mover" not in names(beta), 10)


def test_concurrent_creates_are_placed_within_every_members_policy(lab: Lab) -> None:
    """20 creates at once, through all three members, without --node: each member takes
    exactly as many as its memory policy allows (2 here), no name is given twice."""
    hosts = [lab.hosts[n] for n in ("alpha", "beta", "gamma")]
    mib = 1024 * 1024
    capacity = []
    for d in hosts:
        with d.client() as c:
            capacity.append(c.host_info().capacity["memory"])
    size = min(int(v["physical"]) for v in capacity) // 8 // mib * mib
    for d, v in zip(hosts, capacity, strict=True):  # room for exactly two more of `size`
        ratio = (int(v["allocated"]) + 2 * size + size // 2) / int(v["physical"])
        corral(d, "host", "policy", f"memory={ratio:.6f}")
    for d in hosts:  # the placer reads published facts: wait for the new policies
        assert wait_until(lambda d=d: all(  # type: ignore[misc]
            m["facts"]["capacity"]["memory"]["max_ratio"] < 4
            for m in members(d).values()), 10)
    results: dict[str, str] = {}
    lock = threading.Lock()

    def make(i: int) -> None:
        d = hosts[i % 3]
        name = f"p{i % 10}" if i >= 10 else f"p{i}"  # p0..p9 asked twice each
        try:
            with d.client() as c:
                c.create_instance(CreateRequest(name=name, type="ct", template="tiny",
                                                memory=f"{size // mib}M"))
            outcome = "ok"
        except ApiError as exc:
            outcome = f"{exc.code}: {exc.message}"
        with lock:
            results[f"{i}:{name}"] = outcome

    threads = [threading.Thread(target=make, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = sorted(k.split(":")[1] for k, v in results.items() if v == "ok")
    try:
        assert len(made) == 6 and len(set(made)) == 6, results
        refused = [v for v in results.values() if v != "ok"]
        assert all(v.startswith(("overcommitted", "conflict")) for v in refused), refused
        for d in hosts:
            assert wait_until(lambda d=d: {n for n in names(d) if n.startswith("p")}  # type: ignore[misc]
                              == set(made), 10)
        everywhere = names(hosts[0])
        per_node = [sum(1 for n in made if everywhere[n] == node)
                    for node in ("alpha", "beta", "gamma")]
        assert per_node == [2, 2, 2]
        for d in hosts:
            with d.client() as c:
                memory = c.host_info().capacity["memory"]
            assert memory["allocated"] <= memory["max_ratio"] * memory["physical"]
        # --node forces a member; a cordoned member gets nothing new
        for d in hosts:
            corral(d, "host", "policy", "memory=4")
        corral(hosts[0], "create", "forced", "--type", "ct", "--template", "tiny",
               "--node", "gamma")
        assert corral(hosts[1], "info", "forced", "--format", "json")["node"] == "gamma"
        error = corral(hosts[0], "create", "x", "--type", "ct", "--template", "tiny",
                       "--node", "nowhere", ok=False)
        assert "no member named 'nowhere'" in error
    finally:
        for d in hosts:
            corral(d, "host", "policy", "memory=4")
        for name in [*made, "forced"]:
            hosts[0].cli("delete", name)


def test_a_killed_member_shows_offline_within_10s_and_comes_back(lab: Lab) -> None:
    beta = lab.hosts["beta"]
    alpha = lab.hosts["alpha"]
    stop_daemon(beta, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: not members(alpha)["beta"]["online"], 12)
    assert time.monotonic() - killed <= 11  # 10 s lease + one read of slack
    assert "before" in names(alpha)  # its instances stay listed, under its name
    beta = lab.restart("beta")
    assert wait_until(lambda: members(alpha)["beta"]["online"], 10)
    assert corral(beta, "cluster", "status", "--format", "json")["clustered"] is True


def test_one_etcd_member_lost_then_quorum_lost(lab: Lab) -> None:
    alpha, gamma = lab.hosts["alpha"], lab.hosts["gamma"]
    first, second, _third = lab.etcd.members
    lab.etcd.kill(first)
    try:
        here(gamma, "while-one-down")
        assert wait_until(lambda: "while-one-down" in names(alpha), 10)
        assert all(m["online"] for m in members(alpha).values())
        lab.etcd.kill(second)
        assert wait_until(lambda: not any(lab.etcd.leader(m) for m in lab.etcd.members),
                          10)
        error = corral(alpha, "create", "no-quorum", "--type", "ct", "--template", "tiny",
                       "--node", "alpha", ok=False)
        assert "lost quorum" in error and "local reads" in error
        assert "no-quorum" not in names(alpha)  # nothing half-made
        local = names(alpha, "--node", "alpha")
        assert set(local) == {"web1", "db1"}  # local reads go on
        corral(alpha, "start", "web1")  # and so does local work on guests
        corral(alpha, "stop", "web1")
    finally:
        for member in (first, second):
            if member.name in lab.etcd.stopped:
                lab.etcd.start(member, state="existing")
        lab.etcd.wait_healthy()
    here(alpha, "after-quorum")


def test_cordon_and_leave(lab: Lab) -> None:
    alpha, gamma = lab.hosts["alpha"], lab.hosts["gamma"]
    corral(gamma, "host", "cordon", "alpha")
    assert members(gamma)["alpha"]["cordoned"] is True
    error = corral(alpha, "create", "cordoned", "--type", "ct", "--template", "tiny",
                   "--node", "alpha", ok=False)
    assert "cordoned" in error
    create(alpha, "placed-away")  # without --node: placement skips the cordoned member
    assert corral(alpha, "info", "placed-away", "--format", "json")["node"] != "alpha"
    corral(alpha, "delete", "placed-away")
    assert "no member named" in corral(alpha, "host", "cordon", "nowhere", ok=False)
    corral(alpha, "host", "uncordon", "alpha")
    here(alpha, "uncordoned")

    corral(gamma, "cluster", "leave")
    assert sorted(members(alpha)) == ["alpha", "beta"]
    assert "while-one-down" not in names(alpha)
    assert names(gamma) == {"while-one-down": "gamma"}  # its instances stay, single host
    assert corral(gamma, "cluster", "status", "--format", "json")["clustered"] is False


def test_a_cluster_on_a_local_etcd_member_over_tls(tmp_path: Path) -> None:
    """``cluster init`` without --etcd: a local member over TLS with client certificates
    under a CA made here (key 0600); a joining host gets a client certificate of that CA
    over the pinned join channel, never the CA's key; etcd refuses a client without one."""
    solo_dir, duo_dir = tmp_path / "solo", tmp_path / "duo"
    write_fake_template(solo_dir / "templates")
    d = start_daemon(solo_dir, node="solo")
    duo: Daemon | None = None
    try:
        create(d, "web1")
        port, peer = free_port(), free_port()
        status = corral(d, "cluster", "init", "--etcd-listen", f"127.0.0.1:{port}",
                        "--etcd-peer-listen", f"127.0.0.1:{peer}", "--format", "json")
        assert status["local_etcd"] and status["endpoints"] == [f"https://127.0.0.1:{port}"]
        assert status["tls"] and status["client_cert"] and status["warnings"] == []
        tls = solo_dir / "cluster-tls"
        assert (tls / "ca-key.pem").stat().st_mode & 0o777 == 0o600
        assert (tls / "member-key.pem").stat().st_mode & 0o777 == 0o600
        ca = ssl.create_default_context(cafile=str(tls / "ca.pem"))  # no client certificate
        with pytest.raises(OSError) as refused:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/v3/kv/range", data=b"{}",
                                   timeout=5, context=ca)
        assert not isinstance(refused.value, urllib.error.HTTPError)  # no answer at all
        assert not leader_of(f"http://127.0.0.1:{port}")  # and no plain HTTP

        duo_dir.mkdir()
        duo = start_daemon(duo_dir, node="duo")
        corral(duo, "cluster", "join", d.url, "--token", d.token)
        given = duo_dir / "cluster-tls"
        assert sorted(p.name for p in given.iterdir()) == [
            "client-key.pem", "client.pem", "etcd-ca.pem"]  # no CA key
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in given.iterdir())
        issued = x509.load_pem_x509_certificate((given / "client.pem").read_bytes())
        assert issued.issuer == x509.load_pem_x509_certificate(
            (tls / "ca.pem").read_bytes()).subject
        assert "corral-duo" in issued.subject.rfc4514_string()
        assert sorted(members(duo)) == ["duo", "solo"]
        corral(duo, "cluster", "leave")
        assert not given.exists()
        stop_daemon(duo)
        duo = None

        pid = int((solo_dir / "etcd" / "etcd.pid").read_text())
        stop_daemon(d)  # the member outlives corrald (like a guest) and is adopted
        assert Path(f"/proc/{pid}").exists()
        d = start_daemon(solo_dir, node="solo")
        assert int((solo_dir / "etcd" / "etcd.pid").read_text()) == pid
        assert corral(d, "cluster", "status", "--format", "json")["online"] == 1
        error = corral(d, "create", "web1", "--type", "ct", "--template", "tiny", ok=False)
        assert "already exists" in error
        corral(d, "cluster", "leave")
        assert wait_until(lambda: not Path(f"/proc/{pid}/cmdline").exists()
                          or not Path(f"/proc/{pid}/cmdline").read_bytes(), 10)
        assert not (solo_dir / "etcd").exists() and not tls.exists()
        assert names(d) == {"web1": "solo"}
    finally:
        if duo is not None:
            stop_daemon(duo)
        stop_daemon(d)
        pid_file = solo_dir / "etcd" / "etcd.pid"
        if pid_file.exists():  # a failed test must not leave etcd running
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_ids_deleted_before_init_stay_in_quarantine_and_creates_go_on(tmp_path: Path) -> None:
    """A host that deleted an instance (its id in the 30-day quarantine) makes a cluster:
    the cluster must not hand that id out again -- it did, this host's database refused it,
    and every create failed ("id 102 reserved in the cluster ... is in use") for good."""
    state = tmp_path / "solo"
    write_fake_template(state / "templates")
    d = start_daemon(state, node="solo")
    pid_file = state / "etcd" / "etcd.pid"
    try:
        for name in ("keep", "gone"):
            create(d, name)
        ids = {i["name"]: i["id"] for i in corral(d, "list", "--format", "json")}
        corral(d, "delete", "gone")
        corral(d, "cluster", "init", "--etcd-listen", f"127.0.0.1:{free_port()}",
               "--etcd-peer-listen", f"127.0.0.1:{free_port()}")
        for name in ("after1", "after2"):
            create(d, name)
        now = {i["name"]: i["id"] for i in corral(d, "list", "--format", "json")}
        assert now["keep"] == ids["keep"]
        assert ids["gone"] not in now.values()  # still in quarantine
        assert len(set(now.values())) == 3
        corral(d, "cluster", "leave")
    finally:
        stop_daemon(d)
        if pid_file.exists():  # a failed test must not leave etcd running
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
