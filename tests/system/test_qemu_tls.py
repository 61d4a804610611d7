"""QEMU's NBD over TLS with Corral's credentials (drivers/qemu/tlscreds.py), between two real
QEMUs without guests: the pinned peer connects; a peer with another key is refused in either
direction, with the connection never made."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.migration import StreamTls
from corral.drivers.qemu.migrate import free_port
from corral.drivers.qemu.qmp import close_monitor, monitor
from corral.drivers.qemu.tlscreds import CLIENT_DIR, CREDS_ID, SERVER_DIR, add_creds, drop_creds
from corral.host.tls import Identity, cert_name, ensure_identity

pytestmark = pytest.mark.system
QEMU = shutil.which("qemu-system-x86_64")


class Qemu:
    """``-machine none`` with a QMP socket and a 1 MiB null block node ``disk``."""

    def __init__(self, run: Path) -> None:
        run.mkdir(parents=True)
        self.run, self.qmp = run, run / "qmp.sock"
        assert QEMU is not None
        self.process = subprocess.Popen([
            QEMU, "-machine", "none", "-nodefaults", "-display", "none",
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
            "-blockdev", "driver=null-co,node-name=disk,size=1048576"])
        deadline = time.monotonic() + 20
        while not self.qmp.exists():
            assert self.process.poll() is None, "QEMU exited at start"
            assert time.monotonic() < deadline, "QEMU made no QMP socket"
            time.sleep(0.05)

    def close(self) -> None:
        close_monitor(self.qmp)
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Qemu, Qemu]]:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed on this host")
    made: list[Qemu] = []
    try:
        made = [Qemu(tmp_path / "server"), Qemu(tmp_path / "client")]
        yield made[0], made[1]
    finally:
        for q in made:
            q.close()


def _tls(own: Identity, peer: Identity) -> StreamTls:
    return StreamTls(own.cert, own.key, peer.cert_pem, cert_name(peer.cert_pem))


def _connect(server: Qemu, client: Qemu, server_tls: StreamTls,
             client_tls: StreamTls) -> None:
    s, c = monitor(server.qmp), monitor(client.qmp)
    port = free_port("127.0.0.1")
    add_creds(s, server.run, server_tls, "server")
    s.execute("nbd-server-start", {"addr": {"type": "inet", "data": {
        "host": "127.0.0.1", "port": str(port)}}, "tls-creds": CREDS_ID})
    s.execute("block-export-add", {"type": "nbd", "id": "e", "name": "disk",
                                   "node-name": "disk", "writable": True})
    add_creds(c, client.run, client_tls, "client")
    c.execute("blockdev-add", {
        "driver": "nbd", "node-name": "remote", "export": "disk",
        "server": {"type": "inet", "host": "127.0.0.1", "port": str(port)},
        "tls-creds": CREDS_ID, "tls-hostname": client_tls.peer_name})


def _reset(server: Qemu, client: Qemu) -> None:
    monitor(server.qmp).execute("block-export-del", {"id": "e", "mode": "hard"})
    monitor(server.qmp).execute("nbd-server-stop")
    for q in (server, client):
        drop_creds(monitor(q.qmp), q.run)


def test_pinned_peers_connect_and_others_are_refused(pair: tuple[Qemu, Qemu],
                                                      tmp_path: Path) -> None:
    server, client = pair
    a = ensure_identity(tmp_path / "a", "host-a")
    b = ensure_identity(tmp_path / "b", "host-b")
    imposter = ensure_identity(tmp_path / "imposter", "host-b")  # b's name, another key

    # the server presents a certificate other than the one the client pinned
    with pytest.raises(HostFailure):
        _connect(server, client, _tls(imposter, a), _tls(a, b))
    assert not [n for n in monitor(client.qmp).execute("query-named-block-nodes")
                if n.get("node-name") == "remote"]
    _reset(server, client)

    # the client presents a certificate the server does not pin
    with pytest.raises(HostFailure):
        _connect(server, client, _tls(b, a), _tls(imposter, b))
    _reset(server, client)

    # both pinned: the client reads the export
    _connect(server, client, _tls(b, a), _tls(a, b))
    nodes = [n["node-name"] for n in monitor(client.qmp).execute("query-named-block-nodes")]
    assert "remote" in nodes
    monitor(client.qmp).execute("blockdev-del", {"node-name": "remote"})
    for q in pair:
        drop_creds(monitor(q.qmp), q.run)
        assert not (q.run / SERVER_DIR).exists() and not (q.run / CLIENT_DIR).exists()
