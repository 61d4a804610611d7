"""migration.peer over a real TLS server: the peer client is the SDK's transport (pinned to
the peer's certificate, the bearer token sent) and reads errors the SDK's way, each failure a
HostFailure naming the peer."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.host.tls import ensure_identity
from corral.migration.peer import PeerClient, PeerError


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    token: str
    cert_pem: str


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer s3cret":
            self._answer(401, {"error": "unauthorized", "message": "bad token"})
        elif self.path == "/api/v1/host":
            self._answer(200, {"node": "peer"})
        elif self.path.startswith("/api/v1/migrations/incoming/"):
            self._answer(404, {"error": "not_found", "message": "no migration m1"})
        else:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"plain failure")

    def do_DELETE(self) -> None:
        self.do_GET()

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An HTTPS server on loopback with its own identity: (url, its certificate PEM)."""
    identity = ensure_identity(tmp_path_factory.mktemp("tls"), "peer")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert, identity.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", identity.cert_pem
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_answers_and_errors_of_the_peer(server: tuple[str, str]) -> None:
    url, pem = server
    with PeerClient(Remote("east", url, "s3cret", pem)) as peer:
        assert peer.host() == {"node": "peer"}
        with pytest.raises(PeerError) as missing:
            peer.status("m1")
        assert (missing.value.peer_status, missing.value.peer_code) == (404, "not_found")
        assert missing.value.message == "target 'east': no migration m1"
        peer.abort("m1", "gone already")  # a 404 on abort counts as done
        with pytest.raises(PeerError) as plain:
            peer.request("GET", "/elsewhere")
        assert (plain.value.peer_status, plain.value.message) == (500,
                                                                  "target 'east': plain failure")
    with PeerClient(Remote("east", url, "wrong", pem)) as peer, \
            pytest.raises(PeerError, match="bad token"):
        peer.host()


def test_a_certificate_other_than_the_pinned_one_is_refused(server: tuple[str, str],
                                                            tmp_path: Path) -> None:
    url, _ = server
    other = ensure_identity(tmp_path / "other", "peer").cert_pem
    with PeerClient(Remote("east", url, "s3cret", other)) as peer, \
            pytest.raises(HostFailure, match=r"target 'east' .* is unreachable") as refused:
        peer.host()
    assert not isinstance(refused.value, PeerError)


def test_no_listener_is_unreachable(server: tuple[str, str]) -> None:
    _, pem = server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with PeerClient(Remote("west", f"https://127.0.0.1:{port}", "s3cret", pem)) as peer, \
            pytest.raises(HostFailure, match=r"target 'west' .* is unreachable"):
        peer.host()
