"""Work over a whole cluster (fake driver, real 3-member etcd): a member evacuated and
restored; bulk operations whose items live on other members."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import (
    Daemon,
    start_daemon,
    stop_daemon,
    wait_until,
    write_fake_template,
)
from tests.integration.etcd_lab import ETCD, etcd_lab
from tests.integration.test_cluster import Lab, corral, listed, members, names

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd (etcd-server) is not installed")

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("cluster-ops")
    with etcd_lab(root / "etcd") as etcd:
        hosts: dict[str, Daemon] = {}
        try:
            for node in ("alpha", "beta", "gamma"):
                write_fake_template(root / node / "templates")
                hosts[node] = start_daemon(root / node, node=node)
            alpha = hosts["alpha"]
            corral(alpha, "cluster", "init", "--etcd", ",".join(etcd.endpoints), *etcd.cli_tls)
            for node in ("beta", "gamma"):
                corral(hosts[node], "cluster", "join", alpha.url, "--token", alpha.token)
            yield Lab(etcd, hosts, root)
        finally:
            for d in hosts.values():
                stop_daemon(d)


def results(d: Daemon, *args: str) -> tuple[int, dict[str, list[str]]]:
    """Run a bulk-style command; (exit code, name -> [result, message]) from its table."""
    proc = d.cli(*args)
    rows: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1] in ("ok", "failed", "skipped"):
            rows[parts[0]] = [parts[1], parts[2] if len(parts) > 2 else ""]
    return proc.returncode, rows


def memory_ratio(d: Daemon, room: int) -> str:
    """A memory policy leaving ``room`` bytes free on ``d``."""
    with d.client() as c:
        v = c.host_info().capacity["memory"]
    return f"memory={(int(v['allocated']) + room) / int(v['physical']):.6f}"


def test_evacuate_a_member_and_restore_it(lab: Lab) -> None:
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    for name, kind in (("ev-ct", "ct"), ("ev-vm", "vm"), ("ev-big", "ct")):
        size = ("--memory", "1024M") if name == "ev-big" else ("--memory", "128M")
        corral(alpha, "create", name, "--type", kind, "--template", "tiny", "--node", "alpha",
               *size)
    corral(alpha, "start", "ev-ct")
    corral(alpha, "start", "ev-big")
    ev_ct_id = corral(alpha, "info", "ev-ct", "--format", "json")["id"]
    for d in (beta, gamma):  # room for the small ones only
        corral(d, "host", "policy", memory_ratio(d, 512 * MIB))
    try:
        _wait_policies(beta)
        code, rows = results(beta, "host", "evacuate", "alpha")  # forwarded to alpha
        assert code == 1, rows
        assert rows["ev-ct"][0] == "ok" and rows["ev-vm"][0] == "ok", rows
        assert rows["ev-big"][0] == "failed" and "no other member" in rows["ev-big"][1]
        assert members(gamma)["alpha"]["cordoned"] is True
        assert wait_until(lambda: names(gamma).get("ev-ct", "alpha") != "alpha"
                          and names(gamma).get("ev-vm", "alpha") != "alpha", 10), names(gamma)
        assert names(gamma)["ev-big"] == "alpha"
        moved = corral(gamma, "info", "ev-ct", "--format", "json")
        assert (moved["id"], moved["state"]) == (ev_ct_id, "running")  # moved while running

        code, rows = results(alpha, "host", "evacuate", "alpha", "--stop")
        assert code == 0 and rows["ev-big"][0] == "ok" and "stopped here" in rows["ev-big"][1]
        assert corral(alpha, "info", "ev-big", "--format", "json")["state"] == "stopped"

        code, rows = results(gamma, "host", "restore", "alpha")
        assert code == 0, rows
        assert rows["ev-ct"][0] == "ok" and rows["ev-vm"][0] == "ok", rows
        assert members(beta)["alpha"]["cordoned"] is False
        assert listed(beta, {**names(beta), "ev-ct": "alpha", "ev-vm": "alpha"})
        back = corral(alpha, "info", "ev-ct", "--format", "json")
        assert (back["id"], back["state"], back["node"]) == (ev_ct_id, "running", "alpha")
        error = corral(alpha, "host", "restore", "alpha", ok=False)
        assert "nothing to restore" in error
        error = corral(alpha, "host", "evacuate", "nowhere", ok=False)
        assert "no member named 'nowhere'" in error
    finally:
        for d in (beta, gamma):
            corral(d, "host", "policy", "memory=4")
        corral(alpha, "host", "uncordon", "alpha")
        for name in ("ev-ct", "ev-vm", "ev-big"):
            alpha.cli("delete", name, "--force")


def _wait_policies(d: Daemon) -> None:
    def tight() -> bool:
        found: dict[str, Any] = members(d)
        return all(found[n]["facts"]["capacity"]["memory"]["max_ratio"] < 4
                   for n in ("beta", "gamma"))
    assert wait_until(tight, 10)



def test_bulk_stop_by_selector_reaches_every_member(lab: Lab) -> None:
    """Labels are published with instances: a selector given on alpha picks instances on
    all three members; each item runs on its owner; one that fails there fails alone."""
    hosts = [lab.hosts[n] for n in ("alpha", "beta", "gamma")]
    made = []
    for d in hosts:
        node = d.state_dir.name
        for i in (1, 2):
            name = f"web-{node}-{i}"
            corral(d, "create", name, "--type", "ct", "--template", "tiny", "--node", node)
            corral(d, "label", "set", name, "role=web")
            corral(d, "start", name)
            made.append(name)
    corral(hosts[1], "create", "db-beta", "--type", "ct", "--template", "tiny",
           "--node", "beta")
    corral(hosts[1], "start", "db-beta")
    alpha = hosts[0]
    try:
        broken_name = "web-gamma-2"
        broken_id = corral(hosts[2], "info", broken_name, "--format", "json")["id"]
        (lab.root / "gamma" / "instances" / str(broken_id) / "fake.json").unlink()
        assert wait_until(lambda: {n for n, _ in names(alpha).items() if n.startswith("web-")}
                          == set(made), 10)  # and their labels published with them
        code, rows = results(alpha, "stop", "--selector", "role=web", "--force")
        assert code == 1, rows
        assert set(rows) == set(made)  # db-beta (no label) not picked
        failed = [n for n, r in rows.items() if r[0] == "failed"]
        assert failed == [broken_name] and "gamma" in rows[broken_name][1], rows
        for name in set(made) - {broken_name}:
            assert rows[name][0] == "ok", rows
            owner = name.split("-")[1]
            assert corral(lab.hosts[owner], "info", name, "--format", "json")["state"] \
                == "stopped"
        assert corral(hosts[1], "info", "db-beta", "--format", "json")["state"] == "running"
        # several names, on several members, from one of them
        code, rows = results(hosts[1], "start", "web-alpha-1", "web-gamma-1", "web-beta-1")
        assert code == 0 and all(r[0] == "ok" for r in rows.values()) and len(rows) == 3, rows
    finally:
        for name in [*made, "db-beta"]:
            alpha.cli("delete", name, "--force")
