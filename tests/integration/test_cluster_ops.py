"""Work over a whole cluster (fake driver, real 3-member etcd): a member evacuated and
restored; bulk operations whose items live on other members (and their cancel); placement
groups, required features, bulk migration to members placement picks; templates shared
between members."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.client.users import UserCalls
from corral.cluster.etcd import EtcdClient
from corral.domain.bulk import BulkAction
from corral.domain.statuses import OperationStatus
from corral.templates.artifact import export_template
from corral.wire.bulk import BulkRequestModel
from corral.wire.models import CreateRequest, OperationModel
from tests.integration.conftest import (
    Daemon,
    start_daemon,
    stop_daemon,
    wait_until,
    write_fake_template,
)
from tests.integration.etcd_lab import ETCD, etcd_lab
from tests.integration.test_cluster import Lab, corral, listed, members, names
from tests.unit.templates.test_artifact import make_template

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
                          == set(made), 10)
        # list --selector (what `delete --selector` confirms and sends) sees all members':
        # each member publishes a label change on its own time (a name can be there
        # before its label: once under CI's load)
        assert wait_until(lambda: set(names(hosts[1], "--selector", "role=web"))
                          == set(made), 10)
        assert wait_until(lambda: set(names(alpha, "--selector", "role=web")) == set(made), 10)
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


def _create(d: Daemon, name: str, *extra: str, ok: bool = True) -> Any:
    return corral(d, "create", name, "--type", "ct", "--template", "tiny", *extra, ok=ok)


def test_placement_groups_keep_their_rule(lab: Lab) -> None:
    """Anti-affinity: creates racing through two members land on three members, a fourth
    cannot be placed; affinity follows the first; migrations may not break either rule."""
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    corral(alpha, "group", "create", "db", "--anti-affinity")
    corral(beta, "group", "create", "web", "--affinity")
    made: list[str] = []
    try:
        assert "already exists" in corral(gamma, "group", "create", "db", "--affinity",
                                          ok=False)
        failures: list[Exception] = []

        def make(d: Daemon, name: str) -> None:
            try:
                with d.client() as c:
                    c.create_instance(CreateRequest(name=name, type="ct", template="tiny",
                                                    group="db"))
            except Exception as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=make, args=(d, f"db-{i}"))
                   for i, d in enumerate((alpha, beta, alpha), 1)]
        made += ["db-1", "db-2", "db-3"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        group = corral(gamma, "group", "show", "db", "--format", "json")
        where = {m["instance"]: m["node"] for m in group["members"]}
        assert sorted(where) == made and sorted(where.values()) == ["alpha", "beta", "gamma"]
        error = _create(beta, "db-4", "--group", "db", ok=False)
        assert "placement group 'db'" in error and "anti-affinity" in error, error
        error = _create(beta, "db-5", "--group", "db", "--node", where["db-1"], ok=False)
        assert "anti-affinity" in error and "db-1" in error, error
        assert "db-4" not in names(alpha) and "db-5" not in names(alpha)
        info = corral(gamma, "info", "db-1", "--format", "json")
        assert info["group"] == "db (anti-affinity)"
        error = corral(alpha, "migrate", "db-1", where["db-2"], ok=False)
        assert "cannot migrate 'db-1'" in error and "anti-affinity" in error, error

        _create(alpha, "web-1", "--group", "web", "--node", "beta")
        _create(gamma, "web-2", "--group", "web")
        made += ["web-1", "web-2"]
        assert wait_until(lambda: names(alpha).get("web-2") == "beta", 10), names(alpha)
        error = _create(alpha, "web-3", "--group", "web", "--node", "gamma", ok=False)
        assert "affinity" in error and "'beta'" in error, error
        error = corral(alpha, "migrate", "web-1", "gamma", ok=False)  # web-2 stays on beta
        assert "placement group 'web' is affinity" in error, error
        listing = corral(alpha, "group", "list", "--format", "json")
        assert {g["name"]: g["rule"] for g in listing} == {"db": "anti-affinity",
                                                            "web": "affinity"}
        assert "still holds" in corral(alpha, "group", "delete", "web", ok=False)
    finally:
        for name in made:
            alpha.cli("delete", name, "--force")
    corral(alpha, "group", "delete", "web")
    corral(beta, "group", "delete", "db")
    assert corral(gamma, "group", "list", "--format", "json") == []


def test_required_features_and_bulk_migrate_to_auto(lab: Lab) -> None:
    """--require criu lands only where CRIU passes (or fails saying so); `migrate
    --selector … auto` moves each instance to a member placement picks, several names to
    a named member."""
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    with_criu = {n for n, m in members(alpha).items() if m["facts"]["features"]["criu"]}
    made = ["mv-1", "mv-2"]
    try:
        if with_criu:
            _create(alpha, "cr-1", "--require", "criu")
            made.append("cr-1")
            assert names(alpha)["cr-1"] in with_criu
        else:
            error = _create(alpha, "cr-1", "--require", "criu", ok=False)
            assert "(with criu)" in error, error
        error = _create(alpha, "cr-2", "--require", "gpu", ok=False)
        assert "unknown required feature 'gpu'" in error, error
        for name in ("mv-1", "mv-2"):
            _create(alpha, name, "--node", "alpha")
            corral(alpha, "label", "set", name, "role=mv")
        assert wait_until(lambda: sorted(i["name"] for i in corral(
            beta, "list", "--format", "json") if i.get("labels", {}).get("role") == "mv")
            == ["mv-1", "mv-2"], 10)
        code, rows = results(beta, "migrate", "--selector", "role=mv", "auto")
        assert code == 0 and sorted(rows) == ["mv-1", "mv-2"], rows
        assert all(r[0] == "ok" for r in rows.values()), rows
        assert wait_until(lambda: all(names(gamma).get(n) in ("beta", "gamma")
                                      for n in ("mv-1", "mv-2")), 10), names(gamma)
        code, rows = results(gamma, "migrate", "mv-1", "mv-2", "alpha")
        assert code == 0 and all(r[0] == "ok" for r in rows.values()), rows
        assert wait_until(lambda: all(names(beta).get(n) == "alpha"
                                      for n in ("mv-1", "mv-2")), 10), names(beta)
        error = corral(alpha, "migrate", "mv-1", "--live", "auto", ok=False)
        assert "apply to one instance" in error
    finally:
        for name in made:
            alpha.cli("delete", name, "--force")


def test_cancelling_a_bulk_operation_cancels_items_on_other_members(lab: Lab) -> None:
    """Items running on beta for a bulk operation of alpha: cancelling alpha's operation
    cancels beta's one-item bulk too, and the items not started are skipped."""
    alpha, beta = lab.hosts["alpha"], lab.hosts["beta"]
    made = ["cx-1", "cx-2"]
    markers = []
    try:
        for name in made:
            corral(alpha, "create", name, "--type", "vm", "--template", "tiny", "--node", "beta")
            corral(beta, "start", name)
            vm_id = corral(beta, "info", name, "--format", "json")["id"]
            marker = lab.root / "beta" / "instances" / str(vm_id) / "fake-agent-booting"
            marker.touch()  # its exec waits for the (fake) guest agent
            markers.append(marker)
        with alpha.client() as c:
            parent = c.bulk(BulkRequestModel(action=BulkAction.EXEC, names=made,
                                             argv=["true"], parallel=1))

            def remote_bulk() -> list[OperationModel]:
                with beta.client() as b:
                    return [o for o in b.list_operations() if o.action == "bulk-exec"]

            assert wait_until(lambda: any(o.status == OperationStatus.RUNNING
                                          for o in remote_bulk()), 10)
            running = next(o.id for o in remote_bulk() if o.status == OperationStatus.RUNNING)
            c.cancel_operation(parent.id)

            def cancel_reached_beta() -> bool:
                with beta.client() as b:
                    return any(e.path == f"/api/v1/operations/{running}"
                               and e.method == "DELETE" for e in UserCalls(b).audit())

            assert wait_until(cancel_reached_beta, 10)  # its audit log says so
            for marker in markers:  # now let the item end
                marker.unlink()
            assert wait_until(lambda: c.get_operation(parent.id).status.final, 15)
            assert c.get_operation(parent.id).status == OperationStatus.CANCELLED
            statuses = sorted(o.status.value for o in remote_bulk())
            assert statuses == ["cancelled"], statuses  # the second was never sent
            items = {o.instance: o for o in c.children(parent.id)}
            assert items["cx-2"].status == OperationStatus.SKIPPED, items
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
        for name in made:
            alpha.cli("delete", name, "--force")


def _shared(d: Daemon, name: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = corral(d, "template", "list", "--format", "json")
    return next((t for t in found if t["name"] == name), None)


def _store_entries(d: Daemon) -> list[str]:
    return sorted(p.name for p in (d.state_dir / "templates").iterdir())


def test_a_template_imported_on_one_member_is_fetched_on_first_use(
        lab: Lab, tmp_path: Path) -> None:
    """Imported on alpha, listed everywhere; two concurrent creates placed on beta (asked
    on gamma) fetch it once, verified; a copy that does not match what the store says is
    refused on gamma and leaves nothing; deletes are published."""
    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    artifact = tmp_path / "shared-mini.corral-template"
    export_template(make_template(tmp_path / "src", "shared-mini"), artifact)
    corral(alpha, "template", "import", str(artifact))
    made: list[str] = []
    try:
        listed_ = _shared(gamma, "shared-mini")
        assert listed_ is not None and listed_["nodes"] == ["alpha"], listed_
        assert listed_["installed"] is False
        assert "fetched on first use" in corral(gamma, "template", "list")
        info = corral(gamma, "template", "info", "shared-mini", "--format", "json")
        assert (info["installed"], info["nodes"]) == (False, ["alpha"])

        before = _store_entries(beta)
        errors: list[str] = []

        def make(name: str) -> None:
            proc = gamma.cli("create", name, "--type", "ct", "--template", "shared-mini",
                             "--node", "beta")
            if proc.returncode != 0:
                errors.append(proc.stderr)

        threads = [threading.Thread(target=make, args=(f"tf-{i}",)) for i in (1, 2)]
        made += ["tf-1", "tf-2"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []  # the second waited for the first's fetch, did not import again
        assert _store_entries(beta) == sorted([*before, "shared-mini"])  # no .fetch-* left
        info = corral(beta, "info", "tf-1", "--format", "json")
        assert (info["template"], info["node"]) == ("shared-mini", "beta")
        assert wait_until(lambda: (_shared(gamma, "shared-mini") or {}).get("nodes")
                          == ["alpha", "beta"], 10)

        # what the holders published no longer matches their copies: refused, nothing left
        client = EtcdClient(lab.etcd.endpoints, tls=lab.etcd.tls)
        try:
            for node in ("alpha", "beta"):
                key = f"/corral/templates/shared-mini/{node}"
                record = json.loads(client.get(key).value)  # type: ignore[union-attr]
                client.put(key, json.dumps({**record, "sha256": "0" * 64}))
        finally:
            client.close()
        before = _store_entries(gamma)
        error = corral(gamma, "create", "tf-bad", "--type", "ct", "--template", "shared-mini",
                       "--node", "gamma", ok=False)
        assert "checksum mismatch" in error and "nothing was installed" in error, error
        assert _store_entries(gamma) == before
        assert "tf-bad" not in names(alpha)

        for name in ("tf-1", "tf-2"):
            corral(beta, "delete", name)
        made.clear()
        corral(beta, "template", "delete", "shared-mini")
        assert (_shared(gamma, "shared-mini") or {}).get("nodes") == ["alpha"]
        corral(alpha, "template", "delete", "shared-mini")
        assert _shared(gamma, "shared-mini") is None
    finally:
        for name in made:
            beta.cli("delete", name, "--force")
        for d in (alpha, beta, gamma):
            d.cli("template", "delete", "shared-mini")


def test_console_and_events_reach_across_members(lab: Lab) -> None:
    """A console opened on gamma for an instance on alpha is proxied there (bytes both ways,
    the member's close reaches the client, a refusal keeps its code); /events on beta
    carries alpha's events, tagged with their node."""
    from websockets.exceptions import ConnectionClosed

    alpha, beta, gamma = (lab.hosts[n] for n in ("alpha", "beta", "gamma"))
    corral(alpha, "create", "cw-1", "--type", "ct", "--template", "tiny", "--node", "alpha")
    try:
        with gamma.client() as c, c.console("cw-1") as ws, \
                pytest.raises(ConnectionClosed) as refused:  # not running: refused there
            ws.recv(timeout=10)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 4409, \
            refused.value
        assert "it is stopped" in refused.value.rcvd.reason
        corral(alpha, "start", "cw-1")
        with gamma.client() as c, c.console("cw-1") as ws:
            ws.send(b"hello from gamma\n")
            echoed = b""
            while b"hello from gamma\n" not in echoed:
                echoed += ws.recv(timeout=10)

        seen: list[Any] = []
        stop = threading.Event()

        def watch() -> None:
            with beta.client() as c, contextlib.suppress(ConnectionClosed):
                for event in c.events():  # ends at the first event after stop, or teardown
                    seen.append(event)
                    if stop.is_set():
                        return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        def arrived() -> bool:
            with alpha.client() as c:  # an event on alpha, until beta's stream carries one
                c.change_labels("cw-1", {"seen": str(len(seen))})
            return any(e.instance == "cw-1" and e.node == "alpha" for e in seen)

        assert wait_until(arrived, 15), seen
        stop.set()
        assert all(e.node in ("alpha", "beta", "gamma") for e in seen), seen

        # alpha's corrald stops: its end of the console closes, and so does gamma's
        with gamma.client() as c, c.console("cw-1") as ws:
            ws.send(b"again\n")
            echoed = b""
            while b"again\n" not in echoed:
                echoed += ws.recv(timeout=10)
            stop_daemon(alpha)
            with pytest.raises(ConnectionClosed) as ended:
                while True:
                    ws.recv(timeout=10)
        assert ended.value.rcvd is not None and ended.value.rcvd.code in (1001, 1012), \
            ended.value
        alpha = lab.restart("alpha")
    finally:
        alpha.cli("delete", "cw-1", "--force")
