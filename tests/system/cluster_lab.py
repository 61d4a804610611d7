"""Three real-driver corralds as one cluster on a real 3-member etcd, with nothing on the
host's own network: the hosts are the migration lab's (``migration_lab.Lab``: a network
namespace each, joined by a bridge in a hub namespace), and etcd is the etcd lab's
(``etcd_lab``) listening on the lab's uplink, an address of that shared segment on a veth
into the root namespace -- the corralds reach it over the bridge, the test directly.

Used by tests/system/test_cluster_real.py and bench/cluster_real.py.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from corral.client import cluster as cluster_client
from corral.templates.image import TemplateImage
from corral.wire.models import InstanceModel
from tests.integration.etcd_lab import EtcdLab, etcd_lab
from tests.system.migration_lab import Host, Lab

NODES = ("alpha", "beta", "gamma")
NET = 232  # 10.232.0.0/24: the migration lab has 10.231


@dataclass
class ClusterLab:
    lab: Lab
    etcd: EtcdLab

    @property
    def hosts(self) -> dict[str, Host]:
        return {h.name: h for h in self.lab.hosts}

    def where(self, via: Host) -> dict[str, str]:
        """Every instance of the cluster -> its member, as ``via`` lists them."""
        with via.client() as c:
            return {i.name: i.node for i in c.list_instances()}

    def info(self, via: Host, name: str) -> InstanceModel:
        with via.client() as c:
            return c.get_instance(name)

    def cordoned(self, via: Host) -> dict[str, bool]:
        with via.client() as c:
            return {m.node: m.cordoned for m in cluster_client.members(c)}

    def run(self, via: Host, name: str, script: str) -> str:
        """``sh -c script`` inside ``name`` (exit 0 asserted): its output, stripped."""
        with via.client() as c:
            code, out, err = c.exec(name, ["sh", "-c", script], timeout=120)
        assert code == 0, (name, script, code, out, err)
        return out.decode().strip()

    def delete(self, name: str) -> None:
        """Force-delete ``name`` on the member holding it (if any does)."""
        owner = self.where(self.lab.hosts[0]).get(name)
        if owner is not None:
            with self.hosts[owner].client() as c:
                c.wait(c.delete_instance(name, force=True).id, 120)


@contextlib.contextmanager
def cluster_lab(template: TemplateImage,
                extra_env: dict[str, str] | None = None) -> Iterator[ClusterLab]:
    """The three hosts (``alpha`` made the cluster, ``beta`` and ``gamma`` joined it through
    alpha's pinned TLS API). Afterwards: every guest force-deleted by its member, the
    daemons stopped, etcd stopped and its data removed, the namespaces (and the uplink)
    deleted."""
    lab = Lab(template, roles=NODES, net=NET, prefix="crltest-cl")
    closed = False
    try:
        uplink = lab.uplink()
        with etcd_lab(Path(tempfile.mkdtemp(prefix="corral-cl-etcd-")), host=uplink) as etcd:
            try:
                lab.start_hosts(extra_env)
                alpha, beta, gamma = lab.hosts
                alpha.cli("cluster", "init", "--etcd", ",".join(etcd.endpoints), *etcd.cli_tls,
                          check=True)
                for host in (beta, gamma):
                    host.cli("cluster", "join", alpha.url, "--token", alpha.token, check=True)
                yield ClusterLab(lab, etcd)
            finally:
                closed = True
                lab.close()  # while etcd is up: each member deletes its own guests
    finally:
        if not closed:
            lab.close()
