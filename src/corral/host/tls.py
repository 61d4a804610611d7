"""This host's TLS identity: a self-signed key and certificate made at first start.

Peers are not authenticated by a CA but by *pinning*: ``corral remote add`` records the
SHA-256 fingerprint and the PEM of the certificate the peer presented, and every later
connection trusts exactly that certificate (it is the only trust anchor, host names are not
checked; the client's side is ``client/tls.py``). The bearer token then authenticates the
caller to the peer.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure, InvalidInput

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
VALID_DAYS = 3650


@dataclass(frozen=True)
class Identity:
    key: Path
    cert: Path

    @property
    def cert_pem(self) -> str:
        return self.cert.read_text()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_pem(self.cert_pem)


def ensure_identity(directory: Path, common_name: str, also: tuple[str, ...] = ()) -> Identity:
    """The key and certificate in ``directory`` (0700), made if missing; reused otherwise.
    It names ``common_name``, 127.0.0.1 and ``also`` (the address it is advertised at: an
    operator's curl or browser checks the name even though Corral's clients pin)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity(directory / KEY_FILE, directory / CERT_FILE)
    if identity.key.exists() and identity.cert.exists():
        return identity
    # cryptography (~16 MiB) loads only to make an identity, not with every daemon
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "corrald")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(common_name or "corrald")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    for extra in also:
        if not extra or extra in (common_name, "127.0.0.1"):
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(extra)))
        except ValueError:
            sans.append(x509.DNSName(extra))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # A self-signed trust anchor: CA so that OpenSSL accepts it as its own root.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = identity.key.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    tmp_key.replace(identity.key)
    tmp_cert = identity.cert.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_cert.replace(identity.cert)
    return identity


def ensure_identity_apart(directory: Path, common_name: str,
                          also: tuple[str, ...] = ()) -> Identity:
    """``ensure_identity``, a missing identity made by a child process: for corrald, whose
    memory then never holds cryptography (~12-16 MiB it would keep after a first start)."""
    identity = Identity(directory / KEY_FILE, directory / CERT_FILE)
    if identity.key.exists() and identity.cert.exists():
        return identity
    from corral.host.run import run_python_apart

    failed = run_python_apart(
        "import sys, pathlib; from corral.host.tls import ensure_identity; ensure_identity("
        "pathlib.Path(sys.argv[1]), sys.argv[2], tuple(sys.argv[3:]))",
        str(directory), common_name, *also)
    if failed is not None:
        raise HostFailure(f"cannot make this host's TLS identity in {directory}: {failed}")
    return identity


def cert_name(pem: str) -> str:
    """The host name a certificate is for: its first DNS name, else its common name (what
    QEMU's TLS checks against the peer's certificate instead of the dialled address)."""
    from cryptography import x509  # loaded when first used (the idle daemon stays lean)
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"not a PEM certificate: {exc}") from None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = sans.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if names:
        return str(names[0])
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not common:
        raise InvalidInput("the peer's certificate names no host")
    return str(common[0].value)


def fingerprint_of_pem(pem: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    hexdigits = text.lower().removeprefix("sha256:").replace(":", "")
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise InvalidInput(f"'{text}' is not a SHA-256 fingerprint (64 hex digits)")
    return "sha256:" + hexdigits


def fetch_certificate(host: str, port: int, timeout: float = 10.0) -> str:
    """The PEM certificate a TLS server presents, unverified (trust on first use: the caller
    compares its fingerprint with one given out of band, or shows it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise HostFailure(f"cannot open a TLS connection to {host}:{port}: {exc}") from exc
    if der is None:
        raise HostFailure(f"{host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)
