"""A real etcd cluster on loopback for cluster tests: N members on free ports, data in a
temporary directory; members can be killed and started again (quorum tests)."""

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

from tests.integration.conftest import free_port

ETCD = shutil.which("etcd")


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdLab:
    members: list[EtcdMember]
    initial_cluster: str
    token: str
    stopped: set[str] = field(default_factory=set)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

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
             "--heartbeat-interval", "50", "--election-timeout", "500"],
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
            if all(leader_of(m.client_url) for m in self.members
                   if m.name not in self.stopped):
                return
            time.sleep(0.1)
        logs = {m.name: (m.data_dir.parent / f"{m.name}.log").read_text()[-800:]
                for m in self.members}
        raise RuntimeError(f"etcd lab not healthy: {logs}")


def leader_of(url: str) -> bool:
    request = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}",
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=1) as reply:
            return bool(json.loads(reply.read()).get("leader"))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def etcd_lab(directory: Path, size: int = 3) -> Iterator[EtcdLab]:
    directory.mkdir(parents=True, exist_ok=True)
    members = [EtcdMember(f"cluster-etcd{i}", free_port(), free_port(),
                          directory / f"etcd{i}") for i in range(size)]
    lab = EtcdLab(members, ",".join(f"{m.name}={m.peer_url}" for m in members),
                  f"corral-test-{directory.name}")
    try:
        for member in members:
            lab.start(member)
        lab.wait_healthy()
        yield lab
    finally:
        for member in members:
            lab.kill(member)
        shutil.rmtree(directory, ignore_errors=True)
