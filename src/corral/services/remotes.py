"""Paired hosts: a remote is a peer corrald's URL, its API token and its pinned certificate.

``add`` connects once without verification to learn the certificate, compares its
fingerprint with the one given (if any: out-of-band verification; else trust on first use,
and the fingerprint is shown), then proves the token with an authenticated call over a
connection that trusts only that certificate. ``join`` pairs both ways.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from corral.domain.errors import Conflict, HostFailure, InvalidInput, NotFound, Unsupported
from corral.domain.names import validate_name
from corral.host.tls import (
    Identity,
    ensure_identity,
    fetch_certificate,
    fingerprint_of_pem,
    normalise_fingerprint,
)
from corral.migration.peer import PeerClient, PeerError
from corral.state.database import utcnow
from corral.state.migstore import MigrationStore, RemoteRecord
from corral.wire.migration import AddRemoteRequest, PairingInfo

log = logging.getLogger("corral.remotes")


def split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput(f"remote URL '{url}' must be https://HOST:PORT")
    return parts.hostname, parts.port or 443


class RemoteService:
    def __init__(self, store: MigrationStore, tls_dir: Path, node: str) -> None:
        self.store = store
        self.node = node
        self._tls_dir = tls_dir
        self._identity: Identity | None = None
        self.make_identity: Callable[[Path, str, tuple[str, ...]], Identity] = ensure_identity
        """How a missing identity is made (corrald: in a child process, ``tls.py``)."""
        self.advertise_url: str | None = None  # set by corrald when it listens on TCP
        self.own_token: str | None = None
        self.member: Callable[[str], RemoteRecord | None] = lambda _name: None
        """A cluster member by name, as a remote (services/cluster.py): `migrate NAME
        MEMBER` needs no `remote add` inside a cluster."""

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            advertised = urlsplit(self.advertise_url or "").hostname
            self._identity = self.make_identity(self._tls_dir, self.node,
                                                (advertised,) if advertised else ())
        return self._identity

    def pairing_info(self) -> PairingInfo:
        return PairingInfo(node=self.node, url=self.advertise_url,
                           fingerprint=self.identity.fingerprint)

    def add(self, name: str, url: str, token: str, fingerprint: str | None,
            replace: bool = False) -> RemoteRecord:
        validate_name(name, "remote")
        host, port = split_url(url)
        if not token:
            raise InvalidInput("a remote needs the peer's API token (--token)")
        if not replace and name in {r.name for r in self.store.list_remotes()}:
            raise Conflict(f"a remote named '{name}' exists; remove it first")
        if self.member(name) is not None:
            raise Conflict(f"'{name}' is a member of this cluster: migrate to it by that "
                           "name; a remote may not share a member's name")
        pem = fetch_certificate(host, port)
        seen = fingerprint_of_pem(pem)
        if fingerprint is not None and normalise_fingerprint(fingerprint) != seen:
            raise HostFailure(
                f"{url} presented certificate {seen}, not the expected "
                f"{normalise_fingerprint(fingerprint)}: refusing to pair"
            )
        if self.advertise_url is not None and seen == self.identity.fingerprint:
            # a migration there would only meet its own instance ("already exists")
            raise InvalidInput(f"{url} is this host (node '{self.node}', certificate {seen}): "
                               "a remote is another host's corrald")
        record = RemoteRecord(name, url.rstrip("/"), token, seen, pem, utcnow())
        with PeerClient(record, timeout=15.0) as peer:
            try:
                peer.host()
            except PeerError as exc:
                if exc.peer_status == 401:
                    raise InvalidInput(f"{url} refused the token: {exc.message}") from exc
                raise
        self.store.put_remote(record, replace=replace)
        log.info("paired with remote %s at %s (%s)", name, url, seen)
        return record

    def join(self, request: AddRemoteRequest, as_name: str | None) -> RemoteRecord:
        """Add the peer here, then ask it to add this host back under ``as_name``."""
        if self.advertise_url is None or self.own_token is None:
            raise Unsupported("this corrald has no TCP listener (--listen): a peer cannot "
                              "reach it back; use `corral remote add` for one direction")
        record = self.add(request.name, request.url, request.token, request.fingerprint)
        back = AddRemoteRequest(name=as_name or self.node, url=self.advertise_url,
                                token=self.own_token, fingerprint=self.identity.fingerprint)
        try:
            with PeerClient(record, timeout=30.0) as peer:
                peer.request("POST", "/api/v1/remotes", json=back.model_dump())
        except BaseException:
            self.store.delete_remote(record.name)
            raise
        return record

    def remove(self, name: str) -> None:
        self.store.delete_remote(name)

    def list(self) -> list[RemoteRecord]:
        return self.store.list_remotes()

    def get(self, name: str) -> RemoteRecord:
        """A paired remote, else a cluster member of that name."""
        try:
            return self.store.get_remote(name)
        except NotFound:
            found = self.member(name)
            if found is None:
                raise
            return found
