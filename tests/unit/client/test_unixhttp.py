"""unixhttp against a real HTTP/1.1 server on a Unix socket (keep-alive, closes, errors)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from corral.client.client import ApiError, CorralClient
from corral.client.unixhttp import UnixHttp, Unreachable


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, str, object]]] = []
    connections: ClassVar[list[str]] = []  # one entry per accepted connection

    def setup(self) -> None:
        super().setup()
        _Handler.connections.append("accepted")

    def address_string(self) -> str:  # a Unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        del format, args

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        _Handler.seen.append((self.command, self.path, self.headers.get("Authorization", ""),
                              body))
        status = 404 if self.path.startswith("/missing") else 200
        payload = (json.dumps({"error": "not_found", "message": "no such thing"}) if status == 404
                   else json.dumps({"path": self.path, "body": body})).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.path.startswith("/close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "api.sock")
    _Handler.seen.clear()
    _Handler.connections.clear()
    srv = _Server(path, _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield path
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_json_requests_share_one_connection(server: str) -> None:
    http = UnixHttp(server, {"Authorization": "Bearer t"})
    status, data = http.request("POST", "/a", params={"wait": 2.5}, json_body={"x": 1},
                                timeout=5)
    assert status == 200 and json.loads(data) == {"path": "/a?wait=2.5", "body": {"x": 1}}
    assert http.request("GET", "/b", timeout=5)[0] == 200
    http.close()
    assert [(m, p, a) for m, p, a, _ in _Handler.seen] == [
        ("POST", "/a?wait=2.5", "Bearer t"), ("GET", "/b", "Bearer t")]
    assert len(_Handler.connections) == 1


def test_a_connection_the_server_closed_is_replaced_not_reused(server: str) -> None:
    http = UnixHttp(server, {})
    assert http.request("GET", "/close-me", timeout=5)[0] == 200
    assert http.request("POST", "/after", json_body={}, timeout=5)[0] == 200
    http.close()
    assert [p for _, p, _, _ in _Handler.seen] == ["/close-me", "/after"]  # each sent once
    assert len(_Handler.connections) == 2


def test_no_daemon_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(Unreachable, match=r"nothing\.sock"):
        UnixHttp(str(tmp_path / "nothing.sock"), {}).request("GET", "/", timeout=5)
    client = CorralClient(socket=str(tmp_path / "nothing.sock"))
    with pytest.raises(ApiError, match="cannot reach corrald") as refused:
        client.list_instances()
    assert refused.value.code == "unreachable"
    client.close()


def test_client_errors_and_query_values_as_httpx_writes_them(server: str) -> None:
    with CorralClient(socket=server) as client:
        with pytest.raises(ApiError, match="no such thing") as missing:
            client._request("GET", "/missing")
        assert missing.value.status == 404 and missing.value.code == "not_found"
        answer = client._request("DELETE", "/x", params={"force": True, "limit": None})
        assert answer["path"] == "/x?force=true&limit="
