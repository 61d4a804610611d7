"""TLS for QEMU's own migration streams (the NBD disk mirror and the RAM stream).

QEMU reads x509 credentials from a directory with fixed names (``ca-cert.pem``,
``server-cert.pem``/``server-key.pem`` or ``client-cert.pem``/``client-key.pem``). Each
migration writes one such directory in the VM's run directory from this host's identity and
the peer's *pinned* certificate: the peer's self-signed certificate is the only CA, so QEMU
accepts exactly the peer Corral paired with (the same pin the HTTPS channel uses), and the
target verifies the source's certificate too (``verify-peer``). Host names are checked
against the name in the pinned certificate (its DNS name), not the address dialled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from corral.domain.errors import HostFailure
from corral.drivers.migration import StreamTls
from corral.drivers.qemu.qmp import Monitor

CREDS_ID = "corral-migrate-tls"
SERVER_DIR = "migrate-tls-server"
CLIENT_DIR = "migrate-tls-client"


def write_creds(run_dir: Path, tls: StreamTls, endpoint: str) -> Path:
    """The credentials directory QEMU reads for ``endpoint`` ("server" or "client")."""
    directory = run_dir / (SERVER_DIR if endpoint == "server" else CLIENT_DIR)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    (directory / "ca-cert.pem").write_text(tls.peer_cert_pem)
    (directory / f"{endpoint}-cert.pem").write_text(tls.own_cert.read_text())
    fd = os.open(directory / f"{endpoint}-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as key:
        key.write(tls.own_key.read_bytes())
    return directory


def add_creds(session: Monitor, run_dir: Path, tls: StreamTls, endpoint: str) -> None:
    """``object-add`` the credentials (replacing a left-over object of an earlier try).

    ``sanity-check`` is off: Corral's host certificates are self-signed with
    ``CA:TRUE`` (they are their own trust anchor), which QEMU's check rejects as a server or
    client certificate; GnuTLS still verifies the peer's chain against the pinned CA."""
    directory = write_creds(run_dir, tls, endpoint)
    drop_creds(session, None)
    args: dict[str, Any] = {
        "qom-type": "tls-creds-x509", "id": CREDS_ID, "dir": str(directory),
        "endpoint": endpoint, "verify-peer": True, "sanity-check": False,
    }
    session.execute("object-add", args)


def drop_creds(session: Monitor, run_dir: Path | None) -> None:
    """Remove the credentials object and (with ``run_dir``) its directories; best effort."""
    with contextlib.suppress(HostFailure):
        session.execute("object-del", {"id": CREDS_ID})
    if run_dir is not None:
        for name in (SERVER_DIR, CLIENT_DIR):
            shutil.rmtree(run_dir / name, ignore_errors=True)

