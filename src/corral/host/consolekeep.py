"""The keeper of a restored container's console pty (run as a script: ``python -I -S``).

A restored container's console is a pty Corral handed CRIU (``host/pty.console_keeper``):
LXC's monitor knows nothing of it, so ``lxc-console`` cannot reach it. This process holds
its master (stdin), appends everything the container writes to the console log (stdout)
and serves one viewer at a time on a Unix socket (argv[1], made 0600): the viewer gets
what the container writes from then on and what it sends goes to the console. A new
viewer takes the place of the previous one (corrald's console hub is the only client and
shares one stream among its viewers). It ends when every holder of the pty's slave side
closed it (the container stopped), removing its socket (only its own: a keeper of a later
restore may have bound the same path meanwhile).

Standard library only and no ``site``: it starts (~20 ms) beside the restore it serves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import sys

VIEWER_TIMEOUT = 5.0


def _bind(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a dead keeper's; a live one's only serves a container now gone
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old)
    server.listen(2)
    return server


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(master: int, log: int, path: str) -> None:
    try:
        server: socket.socket | None = _bind(path)
        ours = os.stat(path).st_ino
    except OSError as exc:  # the log is still kept: the container's console must not close
        print(f"corral console keeper: no viewers ({exc})", file=sys.stderr)
        server, ours = None, -1
    viewer: socket.socket | None = None
    try:
        while True:
            watched = [master, *([server.fileno()] if server else []),
                       *([viewer.fileno()] if viewer else [])]
            ready, _w, _x = select.select(watched, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: no slave holder left
                        raise
                    data = b""
                if not data:
                    return
                with contextlib.suppress(OSError):
                    _write_all(log, data)
                if viewer is not None:
                    try:
                        viewer.sendall(data)
                    except OSError:
                        viewer.close()
                        viewer = None
            if server is not None and server.fileno() in ready:
                conn, _addr = server.accept()
                conn.settimeout(VIEWER_TIMEOUT)  # a stuck viewer must not stop the console
                if viewer is not None:
                    viewer.close()
                viewer = conn
            elif viewer is not None and viewer.fileno() in ready:
                try:
                    typed = viewer.recv(65536)
                except OSError:
                    typed = b""
                if typed:
                    _write_all(master, typed)
                else:
                    viewer.close()
                    viewer = None
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == ours:
                os.unlink(path)


if __name__ == "__main__":
    serve(0, 1, sys.argv[1])
