"""A real etcd cluster on loopback for cluster tests: N members on free ports, data in a
temporary directory; members can be killed and started again (quorum tests).

By default it runs as Corral's own local member does: TLS on the client and peer ports with
client certificates (``--client-cert-auth``) under a CA made by ``host/pki.py``; ``tls``
holds the client files a test hands to ``EtcdClient`` or ``cluster init --etcd-ca …``
(``cli_tls``). ``etcd_lab(..., tls=False)``: plain HTTP."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from corral.host import etcd as local_etcd
from corral.host.pki import TLSFiles, make_ca
from tests.integration.conftest import free_port

ETCD = shutil.which("etcd")


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    scheme: str = "https"
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"


@dataclass
class EtcdLab:
    members: list[EtcdMember]
    initial_cluster: str
    token: str
    pki: Path | None = None
    """The CA's directory (its member certificate serves every member: all on 127.0.0.1)."""
    tls: TLSFiles | None = None
    """Client files: the CA, a client certificate and its key."""
    stopped: set[str] = field(default_factory=set)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def cli_tls(self) -> list[str]:
        """``cluster init`` options for this etcd's client certificate (none if plain)."""
        if self.tls is None:
            return []
        return ["--etcd-ca", str(self.tls.ca), "--etcd-cert", str(self.tls.cert),
                "--etcd-key", str(self.tls.key)]

    def leader(self, member: EtcdMember) -> bool:
        return leader_of(member.client_url, self.tls)

    def start(self, member: EtcdMember, state: str = "new") -> None:
        assert ETCD is not None
        log = open(member.data_dir.parent / f"{member.name}.log", "ab")  # noqa: SIM115
        member.process = subprocess.Popen(
            [ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
             "--listen-client-urls", member.client_url,
             "--advertise-client-urls", member.client_url,
             "--listen-peer-urls", member.peer_url,
             "--initial-advertise-peer-urls", member.peer_url,
             "--initial-cluster", self.initial_cluster,
             "--initial-cluster-token", self.token,
             "--initial-cluster-state", state,
             "--heartbeat-interval", "50", "--election-timeout", "500",
             *([] if self.pki is None else local_etcd.tls_flags(self.pki))],
            stdout=log, stderr=log)
        log.close()
        self.stopped.discard(member.name)

    def kill(self, member: EtcdMember) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.kill()
            member.process.wait()
        self.stopped.add(member.name)

    def restart(self, member: EtcdMember) -> None:
        self.start(member, state="existing")
        self.wait_healthy()

    def wait_healthy(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(self.leader(m) for m in self.members if m.name not in self.stopped):
                return
            time.sleep(0.1)
        logs = {m.name: (m.data_dir.parent / f"{m.name}.log").read_text()[-800:]
                for m in self.members}
        raise RuntimeError(f"etcd lab not healthy: {logs}")


def leader_of(url: str, tls: TLSFiles | None = None) -> bool:
    request = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}",
                                     method="POST")
    try:
        context = None if tls is None else tls.context()
        with urllib.request.urlopen(request, timeout=1, context=context) as reply:
            return bool(json.loads(reply.read()).get("leader"))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def etcd_lab(directory: Path, size: int = 3, tls: bool = True,
             host: str = "127.0.0.1") -> Iterator[EtcdLab]:
    """``host``: the address the members listen on (default loopback; the real-guest cluster
    test gives one of its own lab's segment, which corralds in network namespaces reach)."""
    directory.mkdir(parents=True, exist_ok=True)
    scheme = "https" if tls else "http"
    members = [EtcdMember(f"cluster-etcd{i}", free_port(), free_port(),
                          directory / f"etcd{i}", scheme, host=host) for i in range(size)]
    lab = EtcdLab(members, ",".join(f"{m.name}={m.peer_url}" for m in members),
                  f"corral-test-{directory.name}")
    if tls:
        ca = make_ca(directory / "pki", "lab")
        ca.issue_member("lab", list(dict.fromkeys(["127.0.0.1", "localhost", host])))
        lab.pki = ca.directory
        lab.tls = ca.issue_client("lab-client").write(directory / "client")
    try:
        for member in members:
            lab.start(member)
        lab.wait_healthy()
        yield lab
    finally:
        for member in members:
            lab.kill(member)
        shutil.rmtree(directory, ignore_errors=True)
