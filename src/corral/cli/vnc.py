"""`corral console NAME --vnc`: where a firmware-booted VM's VNC console is, and optionally a
proxy from 127.0.0.1:PORT to its Unix socket (when this CLI runs on the daemon's host)."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from corral.cli import output
from corral.cli.common import client, fail


def vnc_hint(ref: str, port: int | None) -> None:
    with client() as c:
        where = c.vnc(ref)
    path, host = where["socket"], where["host"]
    if port is None:
        print(f"VNC console of {ref}: Unix socket {path} on {host}")
        print(f"  from your machine: ssh -N -L 5900:{path} root@{host}  "
              "then point a VNC viewer at localhost:5900")
        print(f"  on {host}: socat TCP-LISTEN:5900,bind=127.0.0.1,reuseaddr,fork "
              f"UNIX-CONNECT:{path}")
        print(f"  or: corral console {ref} --vnc --vnc-port 5900 (proxies 127.0.0.1 here)")
        return
    if not Path(path).exists():
        fail(f"{path} is not on this machine; run this on {host} or use the ssh hint")
    serve(Path(path), port)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _bridge(conn: socket.socket, path: Path) -> None:
    with conn, socket.socket(socket.AF_UNIX) as upstream:
        try:
            upstream.connect(str(path))
        except OSError as exc:
            output.console.print(f"cannot reach {path}: {exc}")
            return
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join()


def serve(path: Path, port: int) -> None:
    """Accept on 127.0.0.1:``port`` (loopback only: VNC here has no password) until Ctrl-C."""
    with socket.create_server(("127.0.0.1", port)) as server:
        print(f"VNC proxy on 127.0.0.1:{server.getsockname()[1]} -> {path} (Ctrl-C stops)",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=_bridge, args=(conn, path), daemon=True).start()
