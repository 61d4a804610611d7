"""The cluster's own small CA, for etcd's TLS with client certificates.

A cluster whose etcd is the local member ``corral cluster init`` starts has one CA, made by
that host and kept in its state directory (key 0600, never sent anywhere). It signs the
member's server certificate (clients and peers; with the client usage too, because etcd's
JSON gateway dials its own gRPC port with it) and one client certificate per Corral member:
etcd then accepts only clients whose certificate that CA signed. An external etcd brings its
own CA and client certificate (``cluster init --etcd https://… --etcd-ca …``).

``TLSFiles`` is what a client needs (the CA to verify the server, its certificate and key);
``Credentials`` the same as PEM text, as it crosses the API (join) and is written to disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corral.domain.errors import InvalidInput

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_DAYS = 3650
LEAF_DAYS = 3650
"""Leaves live as long as the CA: nothing rotates them yet (docs/known-gaps.md)."""

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
MEMBER_CERT = "member.pem"
MEMBER_KEY = "member-key.pem"
CLIENT_CA = "etcd-ca.pem"
CLIENT_CERT = "client.pem"
CLIENT_KEY = "client-key.pem"


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    def to_json(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> TLSFiles:
        return cls(Path(data["ca"]), Path(data["cert"]), Path(data["key"]))

    def context(self) -> ssl.SSLContext:
        """A client context: trusts only ``ca``, presents ``cert``/``key``."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def read(self) -> Credentials:
        return Credentials(self.ca.read_text(), self.cert.read_text(), self.key.read_text())


@dataclass(frozen=True)
class Credentials:
    ca: str
    cert: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"ca": self.ca, "cert": self.cert, "key": self.key}

    def check(self) -> None:
        """Refuse text that is not a CA certificate, a certificate and its key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            x509.load_pem_x509_certificate(self.ca.encode())
        except ValueError as exc:
            raise InvalidInput(f"the etcd CA is not a PEM certificate: {exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(self.cert.encode())
        except ValueError as exc:
            raise InvalidInput(f"the etcd client certificate is not PEM: {exc}") from None
        try:
            key = serialization.load_pem_private_key(self.key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"the etcd client key is not an unencrypted PEM key: {exc}") \
                from None
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.PEM, public) != \
                cert.public_key().public_bytes(serialization.Encoding.PEM, public):
            raise InvalidInput("the etcd client key does not belong to its certificate")

    def write(self, directory: Path) -> TLSFiles:
        """Into ``directory`` (0700) as the client files, each 0600."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = TLSFiles(directory / CLIENT_CA, directory / CLIENT_CERT, directory / CLIENT_KEY)
        _write(files.ca, self.ca.encode())
        _write(files.cert, self.cert.encode())
        _write(files.key, self.key.encode())
        return files


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


@dataclass(frozen=True)
class ClusterCA:
    """The CA in ``directory``: ``ca.pem`` and ``ca-key.pem`` (0600)."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def key(self) -> Path:
        return self.directory / CA_KEY

    def exists(self) -> bool:
        return self.cert.exists() and self.key.exists()

    def issue_member(self, name: str, hosts: list[str]) -> tuple[Path, Path]:
        """The etcd member's certificate (server and client use: peers, the gateway) for
        ``hosts`` (IP addresses or names); its (cert, key) files."""
        pem, key = self._issue(f"etcd-{name}", hosts, server=True)
        cert_file, key_file = self.directory / MEMBER_CERT, self.directory / MEMBER_KEY
        _write(key_file, key)
        _write(cert_file, pem)
        return cert_file, key_file

    def issue_client(self, name: str) -> Credentials:
        """A client certificate for the Corral member ``name``, with the CA to trust."""
        pem, key = self._issue(f"corral-{name}", [], server=False)
        return Credentials(self.cert.read_text(), pem.decode(), key.decode())

    def _issue(self, common_name: str, hosts: list[str], server: bool) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID

        ca_cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        ca_key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            _base(_name(common_name), key)
            .issuer_name(ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_ca(directory: Path, cluster: str) -> ClusterCA:
    """A new CA in ``directory`` (0700; the key 0600); an existing one is kept."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = ClusterCA(directory)
    if ca.exists():
        return ca
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"corral cluster CA ({cluster})")
    cert = (
        _base(name, key, days=CA_DAYS)
        .issuer_name(name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(ca.key, _key_pem(key))
    _write(ca.cert, cert.public_bytes(serialization.Encoding.PEM))
    return ca


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _base(subject: x509.Name, key: ec.EllipticCurvePrivateKey,
          days: int = LEAF_DAYS) -> x509.CertificateBuilder:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    found: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            found.append(x509.DNSName(host))
    return found


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
