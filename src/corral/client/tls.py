"""The client's side of certificate pinning: trust exactly the certificate a corrald
presented when it was added (``host/tls.py`` makes the server's identity; this module is all
a client needs of it, so the client never reaches into ``host/``)."""

from __future__ import annotations

import ssl


def pinned_context(cert_pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert_pem`` (names are not checked: it is pinned)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert_pem)
    return context
