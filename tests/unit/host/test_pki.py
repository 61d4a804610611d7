"""The cluster CA (host/pki.py): files and modes, what each certificate may do, and a real
TLS handshake on loopback where the server asks for a client certificate, as etcd's
``--client-cert-auth`` does."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.domain.errors import InvalidInput
from corral.host import pki


def _cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_ca_is_made_once_with_its_key_readable_by_the_owner_only(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "tls", "alpha")
    assert ca.exists()
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    assert ca.key.stat().st_mode & 0o777 == 0o600
    cert = _cert(ca.cert.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "alpha" in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    before = ca.cert.read_bytes()
    assert pki.make_ca(tmp_path / "tls", "alpha").cert.read_bytes() == before  # kept


def test_member_and_client_certificates_are_signed_by_the_ca(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path, "alpha")
    root = _cert(ca.cert.read_bytes())
    cert_file, key_file = ca.issue_member("alpha", ["10.0.0.5", "127.0.0.1", "etcd.lan"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    member = _cert(cert_file.read_bytes())
    member.verify_directly_issued_by(root)
    sans = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5",
                                                                          "127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["etcd.lan"]
    # the gateway dials etcd's own gRPC port with this certificate: client use too
    assert _usages(member) == {ExtendedKeyUsageOID.SERVER_AUTH,
                               ExtendedKeyUsageOID.CLIENT_AUTH}
    creds = ca.issue_client("beta")
    client = _cert(creds.cert)
    client.verify_directly_issued_by(root)
    assert _usages(client) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "corral-beta"
    assert creds.ca == ca.cert.read_text()
    creds.check()
    assert ca.issue_client("beta").key != creds.key  # a new key each time


def test_credentials_are_written_0600_and_refused_when_they_do_not_match(
        tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca", "alpha")
    creds = ca.issue_client("beta")
    files = creds.write(tmp_path / "client")
    for path in (files.ca, files.cert, files.key):
        assert path.stat().st_mode & 0o777 == 0o600
    assert files.read() == creds
    other = ca.issue_client("gamma")
    with pytest.raises(InvalidInput, match="does not belong"):
        pki.Credentials(creds.ca, creds.cert, other.key).check()
    with pytest.raises(InvalidInput, match="not PEM"):
        pki.Credentials(creds.ca, "nonsense", creds.key).check()
    with pytest.raises(InvalidInput, match="CA is not a PEM"):
        pki.Credentials("", creds.cert, creds.key).check()
    with pytest.raises(InvalidInput, match="key"):
        pki.Credentials(creds.ca, creds.cert, "-----BEGIN PRIVATE KEY-----\n").check()


def _serve_once(context: ssl.SSLContext, listener: socket.socket, seen: list[str]) -> None:
    conn, _ = listener.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            seen.append(str(peer.get("subject")) if peer else "")
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        seen.append(f"refused: {exc}")


def _handshake(tmp_path: Path, client: ssl.SSLContext) -> tuple[bytes | str, list[str]]:
    ca = pki.make_ca(tmp_path / "ca", "alpha")
    cert_file, key_file = ca.issue_member("alpha", ["127.0.0.1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert_file), str(key_file))
    server.load_verify_locations(str(ca.cert))
    server.verify_mode = ssl.CERT_REQUIRED  # etcd's --client-cert-auth
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_once, args=(server, listener, seen))
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                answer: bytes | str = tls.recv(2)
        except (ssl.SSLError, OSError) as exc:
            answer = f"failed: {exc}"
        thread.join(timeout=10)
    return answer, seen


def test_a_client_with_the_issued_certificate_is_let_in(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca", "alpha")
    files = ca.issue_client("beta").write(tmp_path / "client")
    answer, seen = _handshake(tmp_path, files.context())
    assert answer == b"ok"
    assert "corral-beta" in seen[0]


def test_a_client_without_a_certificate_is_refused(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca", "alpha")
    bare = ssl.create_default_context(cafile=str(ca.cert))  # trusts the CA, presents nothing
    answer, seen = _handshake(tmp_path, bare)
    assert answer != b"ok"
    assert seen and seen[0].startswith("refused")


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    stranger = pki.make_ca(tmp_path / "other", "mallory").issue_client("mallory")
    ca = pki.make_ca(tmp_path / "ca", "alpha")
    files = pki.Credentials(ca.cert.read_text(), stranger.cert, stranger.key).write(
        tmp_path / "client")
    answer, seen = _handshake(tmp_path, files.context())
    assert answer != b"ok"
    assert seen and seen[0].startswith("refused")
