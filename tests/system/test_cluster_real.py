"""A cluster of three real-driver corralds (real LXC and QEMU) on a real etcd, each host in
its own network namespace (``cluster_lab``): bulk exec by selector over 30 containers spread
over the three members with one item failing, and a member holding a running container and a
running VM evacuated and restored.

Timings (each phase) are printed: ``pytest -s`` shows them (docs/perf-log.md has a run's).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from corral.client import ApiError
from corral.client import cluster as cluster_client
from corral.templates.image import TemplateImage
from tests.integration.etcd_lab import ETCD
from tests.system.cluster_lab import NODES, ClusterLab, cluster_lab
from tests.system.fixtures_template import tiny_template
from tests.system.migration_lab import Host

pytestmark = pytest.mark.system
__all__ = ["tiny_template"]

PER_MEMBER = 10
REFUSE = "test ! -e /tmp/not-here || { echo refused >&2; exit 3; }; hostname"


@pytest.fixture(scope="module")
def cluster(tiny_template: TemplateImage) -> Iterator[ClusterLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if ETCD is None:
        pytest.skip("etcd (etcd-server) is not installed")
    for tool in ("lxc-start", "qemu-system-x86_64", "mkfs.ext4", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this host")
    started = time.monotonic()
    with cluster_lab(tiny_template) as lab:
        print(f"\n[cluster_real] lab up (3 corralds, 3 etcd, cluster formed): "
              f"{time.monotonic() - started:.1f} s")
        yield lab
        started = time.monotonic()
    print(f"\n[cluster_real] lab down (guests deleted, corralds and etcd stopped): "
          f"{time.monotonic() - started:.1f} s")


def _timed(what: str, since: float) -> float:
    now = time.monotonic()
    print(f"[cluster_real] {what}: {now - since:.1f} s")
    return now


def _rows(stdout: str) -> dict[str, list[str]]:
    """A bulk command's result table: name -> [result, message]."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1] in ("ok", "failed", "skipped"):
            rows[parts[0]] = [parts[1], parts[2] if len(parts) > 2 else ""]
    return rows


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not so after {seconds} s: {what}")


def _answers(host: Host, name: str) -> bool:
    with host.client() as c:
        try:
            return c.exec(name, ["true"], timeout=10)[0] == 0
        except ApiError:  # the guest's agent is not up yet
            return False


def test_bulk_exec_over_30_containers_on_3_members_one_failing(cluster: ClusterLab) -> None:
    hosts = cluster.hosts
    alpha = hosts["alpha"]
    want = {f"web-{node}-{i}": node for node in NODES for i in range(1, PER_MEMBER + 1)}
    t = time.monotonic()
    try:
        def make(node: str) -> str:
            made = hosts[node].cli(
                "create", f"web-{node}-{{1..{PER_MEMBER}}}", "--type", "ct", "--template",
                "tiny", "--disk", "64M", "--start", "--label", "role=web",
                "--parallel", "4", timeout=600)
            return "" if made.returncode == 0 else f"{node}: {made.stdout}{made.stderr}"

        # a bulk create runs on the member asked: each makes its own ten, the three at once
        with ThreadPoolExecutor(len(NODES)) as pool:
            failures = [f for f in pool.map(make, NODES) if f]
        assert not failures, failures
        t = _timed(f"{len(want)} CTs created and started (10 per member, each on its own)", t)
        # every member's instances (and labels) published: alpha sees all thirty
        _wait(lambda: {n: m for n, m in cluster.where(alpha).items() if n.startswith("web-")}
              == want, 20, "alpha lists the thirty on their members")

        broken = "web-gamma-7"  # the file exists in this container only
        hosts["gamma"].cli("exec", broken, "--", "touch", "/tmp/not-here", check=True)
        t = time.monotonic()
        out = alpha.cli("exec", "--selector", "role=web", "--parallel", "6", "--",
                        "sh", "-c", REFUSE, timeout=300)
        t = _timed("exec --selector role=web over 30 CTs on 3 members (from alpha)", t)
        assert out.returncode == 1, out.stdout + out.stderr
        rows = _rows(out.stdout)
        assert set(rows) == set(want), out.stdout
        assert rows[broken][0] == "failed", rows[broken]
        assert rows[broken][1] == "exit 3: refused (on gamma)", rows[broken]
        for name, node in want.items():
            if name == broken:
                continue
            # hostname: the command ran inside each container, on its own member
            said = f"exit 0: {name}" + ("" if node == "alpha" else f" (on {node})")
            assert rows[name] == ["ok", said], (name, rows[name])
        assert "29 ok, 1 failed of 30" in out.stderr, out.stderr

        gone = alpha.cli("delete", "--selector", "role=web", "--force", "--yes",
                         "--parallel", "6", timeout=600)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        t = _timed("30 deleted by selector from alpha", t)
        _wait(lambda: not any(n.startswith("web-") for n in cluster.where(alpha)), 20,
              f"the thirty gone from the cluster's list: {gone.stdout} {gone.stderr} "
              f"{cluster.where(alpha)} {cluster.where(hosts['beta'])}")
    finally:
        for name in want:  # whatever is left of them, by their own member
            cluster.delete(name)


def test_evacuate_a_member_with_a_container_and_a_vm(cluster: ClusterLab) -> None:
    """The VM part is the slow one (a guest boot, two live migrations of its 128 MiB of RAM
    and its disk): each phase is printed."""
    hosts = cluster.hosts
    alpha, beta, gamma = (hosts[n] for n in NODES)
    run = cluster.run
    t = time.monotonic()
    try:
        gamma.cli("create", "ev-ct", "--type", "ct", "--template", "tiny", "--disk", "64M",
                  "--node", "gamma", "--start", check=True)
        gamma.cli("create", "ev-vm", "--type", "vm", "--template", "tiny", "--node", "gamma",
                  "--start", check=True)
        _wait(lambda: _answers(gamma, "ev-vm"), 120, "ev-vm's agent answers")
        t = _timed("a CT and a VM created and started on gamma (VM agent up)", t)
        boot = run(gamma, "ev-vm", "cat /proc/sys/kernel/random/boot_id")
        marks = {name: run(gamma, name, "head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \\n'"
                                        " | tee /root/mark") for name in ("ev-ct", "ev-vm")}
        _wait(lambda: {"ev-ct", "ev-vm"} <= set(cluster.where(alpha)), 20,
              "alpha lists both")
        ids = {name: cluster.info(gamma, name).id for name in marks}

        t = time.monotonic()
        out = alpha.cli("host", "evacuate", "gamma", timeout=600)  # forwarded to gamma
        t = _timed("host evacuate gamma (CT + VM, from alpha)", t)
        print(out.stdout)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = _rows(out.stdout)
        assert set(rows) == {"ev-ct", "ev-vm"}, out.stdout
        for name, (result, said) in rows.items():
            assert result == "ok" and said.startswith("moved to "), (name, result, said)
        assert cluster.cordoned(beta)["gamma"] is True
        moved = {name: rows[name][1].removeprefix("moved to ").split()[0] for name in rows}
        assert set(moved.values()) <= {"alpha", "beta"}, moved
        _wait(lambda: all(cluster.where(beta).get(n) == m for n, m in moved.items()), 20,
              "both listed on their new members")
        for name, node in moved.items():
            info = cluster.info(hosts[node], name)
            assert (info.id, info.state, info.node) == (ids[name], "running", node)
            assert run(hosts[node], name, "cat /root/mark") == marks[name]
        # the VM moved live: the same boot, no restart
        assert run(hosts[moved["ev-vm"]], "ev-vm",
                   "cat /proc/sys/kernel/random/boot_id") == boot
        # gamma is cordoned: nothing new lands there
        refused = alpha.cli("create", "ev-new", "--type", "ct", "--node", "gamma")
        assert refused.returncode != 0 and "cordon" in refused.stderr, refused.stderr

        t = time.monotonic()
        back = beta.cli("host", "restore", "gamma", timeout=600)
        t = _timed("host restore gamma (CT + VM back, from beta)", t)
        assert back.returncode == 0, back.stdout + back.stderr
        assert cluster.cordoned(alpha)["gamma"] is False
        rows = _rows(back.stdout)
        assert {n: r[0] for n, r in rows.items()} == {"ev-ct": "ok", "ev-vm": "ok"}, back.stdout
        for name, node in moved.items():
            assert rows[name][1].startswith(f"back from {node}"), rows[name]
        _wait(lambda: all(cluster.where(alpha).get(n) == "gamma" for n in moved), 20,
              "both listed on gamma again")
        for name in moved:
            info = cluster.info(gamma, name)
            assert (info.id, info.state, info.node) == (ids[name], "running", "gamma")
            assert run(gamma, name, "cat /root/mark") == marks[name]
        assert run(gamma, "ev-vm", "cat /proc/sys/kernel/random/boot_id") == boot
        again = gamma.cli("create", "ev-new", "--type", "ct", "--disk", "64M",
                          "--node", "gamma")  # uncordoned
        assert again.returncode == 0, again.stderr
    finally:
        with gamma.client() as c:
            cluster_client.cordon(c, "gamma", False)
        for name in ("ev-ct", "ev-vm", "ev-new"):
            cluster.delete(name)
