"""The self-signed identity names the address it is advertised at (setup.sh prints
https://ADDRESS:8443/ui/; curl or a browser checks that name although Corral's clients pin)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from corral.host.tls import cert_name, ensure_identity


def names(cert: Path) -> tuple[set[str], set[str]]:
    found = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = found.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(n) for n in sans.get_values_for_type(x509.DNSName)},
            {str(n) for n in sans.get_values_for_type(x509.IPAddress)})


def test_the_advertised_address_and_name_are_in_the_certificate(tmp_path: Path) -> None:
    made = ensure_identity(tmp_path / "a", "node1", ("192.0.2.7", "corral.example", "node1"))
    dns, ips = names(made.cert)
    assert dns == {"node1", "corral.example"}
    assert ips == {"127.0.0.1", "192.0.2.7"}
    assert cert_name(made.cert_pem) == "node1"  # QEMU's TLS name stays the node's
    assert ipaddress.ip_address("192.0.2.7") in {ipaddress.ip_address(i) for i in ips}


def test_without_an_advertised_address_and_an_existing_identity_kept(tmp_path: Path) -> None:
    made = ensure_identity(tmp_path / "b", "node2")
    assert names(made.cert) == ({"node2"}, {"127.0.0.1"})
    pem = made.cert_pem
    again = ensure_identity(tmp_path / "b", "node2", ("192.0.2.9",))
    assert again.cert_pem == pem  # made once: pinned peers keep trusting it


def test_corrald_makes_its_identity_apart_with_the_same_names(tmp_path: Path) -> None:
    """``ensure_identity_apart`` (corrald's first start): the same certificate, made by a
    child process; a fresh caller never imports cryptography; a made one is kept."""
    import subprocess
    import sys

    probe = ("import sys, pathlib; from corral.host.tls import ensure_identity_apart;"
             " ensure_identity_apart(pathlib.Path(sys.argv[1]), 'node1', ('192.0.2.7',));"
             " print('cryptography' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "a")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]
    from corral.host.tls import ensure_identity_apart

    made = ensure_identity_apart(tmp_path / "a", "other")
    assert names(made.cert) == ({"node1"}, {"127.0.0.1", "192.0.2.7"})
    assert (made.key.stat().st_mode & 0o777) == 0o600
