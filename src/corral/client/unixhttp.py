"""Plain JSON requests to a local corrald over its Unix socket, on ``http.client``.

Most CLI commands and every lifecycle action are one small JSON request on the local socket.
httpx spent ~0.8 ms of Python per such request here (URL and cookie handling, auth and
redirect layers, h11's state machine) -- a fifth of a container start's whole overhead over
raw ``lxc-start`` (bench/start.py). ``http.client`` does the same request in a fraction of
that. httpx stays for TCP/TLS, streamed up- and downloads and everything else.

One keep-alive connection; before reusing it, a connection the daemon has closed meanwhile
(uvicorn closes idle ones after a few seconds) is noticed -- it reads as EOF -- and replaced,
so a request is never sent into a dead connection (and never sent twice).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode


class Unreachable(OSError):
    """No daemon answers on the socket (missing, refused, not permitted)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("corral", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError as exc:
            sock.close()
            raise Unreachable(exc.errno, f"{self._path}: {exc.strerror or exc}") from exc
        self.sock = sock


class UnixHttp:
    def __init__(self, path: str, headers: Mapping[str, str]) -> None:
        self.path = path
        self._headers = dict(headers)
        self._conn: _UnixConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float | None) -> _UnixConnection:
        conn = self._conn
        if conn is not None and (conn.sock is None or _closed_by_peer(conn.sock)):
            conn.close()
            conn = None
        if conn is None:
            conn = _UnixConnection(self.path, timeout)
            conn.connect()
            self._conn = conn
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, timeout: float | None = None) -> tuple[int, bytes]:
        """Status and body (``timeout``: seconds per socket operation, None: none).
        Unreachable if no daemon answers on the socket."""
        url = f"{path}?{urlencode(params)}" if params else path
        headers = dict(self._headers)
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout)
        try:
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()  # a half-done exchange leaves the connection unusable
            raise
        if response.will_close:
            self.close()
        return response.status, data


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only if the daemon closed it (EOF)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
