"""Requests for an instance another member holds, forwarded to it over its TLS API.

``api/forward.py`` asks ``target`` for each ``/api/v1/instances/{ref}…`` request whose
``ref`` is not on this host, and for ``/api/v1/operations/{id}…`` of an operation a forwarded
request started there; the request then goes, as it came (method, path, query, body), to the
member's URL with its certificate pinned (published in the cluster store when it joined).

Identity: the forwarding member presents the cluster's member token (``secret`` in the
store, made at ``cluster init``) and, for a user, the header ``X-Corral-As-User: NAME``. The
receiving member runs it as an administrator (no header) or as its own user of that name
(users are per host: the same name is taken to be the same tenant; a name it does not know is
refused with 401) -- its own policy decides, as for a request made there.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from corral.client.tls import pinned_context
from corral.client.transport import HttpTransport
from corral.client.unixhttp import Unreachable
from corral.cluster.store import ClusterStore, NodeInfo
from corral.domain.errors import CorralError, HostFailure, reason
from corral.domain.users import Caller, Role

log = logging.getLogger("corral.forwarding")

AS_USER = "x-corral-as-user"
"""The header naming the user a forwarded request runs as (absent: an administrator)."""

FORWARDED_BY = "x-corral-forwarded-by"
"""The member that forwarded a request (a forwarded request is never forwarded again)."""

MEMBER = Caller("a cluster member (forwarded request)", Role.ADMIN, user=False)


class _Answered(CorralError):
    """An error another member answered, kept as it said it (status and code)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Forwarded:
    status: int
    body: bytes


@dataclass(frozen=True)
class WebSocketTarget:
    """Where and how to open a websocket on another member (``api/member_ws.py`` does)."""

    node: str
    url: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | None


class Forwarder:
    def __init__(self, node: str, store: Callable[[], ClusterStore],
                 is_local: Callable[[str], bool], user: Callable[[str], Caller | None]) -> None:
        self.node = node
        self.store = store
        self.is_local = is_local
        self.user = user
        self._secret: str | None = None
        self._transports: dict[tuple[str, str], HttpTransport] = {}
        self._operations: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.store().clustered

    def secret(self) -> str | None:
        if self._secret is None and self.active:
            self._secret = self.store().secret()
        return self._secret

    def forget(self) -> None:
        """Left the cluster: no secret, no transports, no remembered operations."""
        with self._lock:
            self._secret = None
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()
            self._operations.clear()

    # Where -------------------------------------------------------------------------------
    def target(self, ref: str) -> NodeInfo | None:
        """The member to forward a request for instance ``ref`` to (None: serve it here)."""
        if not self.active or self.is_local(ref):
            return None
        store = self.store()
        node = store.locate(ref)
        if node is None or node == self.node:
            return None
        return store.node_info(node)

    def operation_target(self, op_id: str) -> NodeInfo | None:
        with self._lock:
            node = self._operations.get(op_id)
        return None if node is None else self.store().node_info(node)

    # Forward -----------------------------------------------------------------------------
    def forward(self, member: NodeInfo, method: str, path: str, query: str, body: bytes,
                content_type: str | None, caller: Caller) -> Forwarded:
        headers = self._member_headers(member)
        if caller.user:
            headers[AS_USER] = caller.name
        if content_type:
            headers["content-type"] = content_type
        target = path + (f"?{query}" if query else "")
        import httpx  # only a cluster member forwards: a lone daemon never loads it (~20 MiB)

        try:
            try:
                status, data = self._transport(member).exchange(
                    method, target, content=body, headers=headers)
            except httpx.RemoteProtocolError:
                # a pooled connection the member closed as idle (uvicorn: after 5 s) just as
                # it was reused: nothing was answered, so nothing was done; once more
                status, data = self._transport(member).exchange(
                    method, target, content=body, headers=headers)
        except (Unreachable, httpx.TransportError) as exc:
            raise HostFailure(f"member '{member.node}' ({member.url}), which holds the "
                              f"instance, is unreachable: {reason(exc)}") from exc
        self._remember_operation(member.node, data)
        return Forwarded(status, data)

    def download(self, member: NodeInfo, path: str, out: BinaryIO,
                 chunk: Callable[[bytes], None] | None = None) -> int:
        """GET ``path`` from ``member`` as this member (an administrator there), streamed into
        ``out`` piece by piece (never whole in memory); the bytes written. An error answer is
        raised as the member's ``CorralError`` (its status and message)."""
        headers = self._member_headers(member)
        import httpx

        written = 0
        try:
            with self._transport(member).client.stream("GET", path, headers=headers) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    try:
                        error: Any = json.loads(answer.content)
                    except ValueError:
                        error = {}
                    if not isinstance(error, dict):
                        error = {}
                    raise _Answered(answer.status_code, str(error.get("error", "error")),
                                    f"member '{member.node}': "
                                    f"{error.get('message', answer.text[:200])}")
                for piece in answer.iter_bytes(1 << 20):
                    out.write(piece)
                    if chunk is not None:
                        chunk(piece)
                    written += len(piece)
        except httpx.TransportError as exc:
            raise HostFailure(f"member '{member.node}' ({member.url}) is unreachable or broke "
                              f"off: {exc or type(exc).__name__}") from exc
        return written

    def websocket_target(self, member: NodeInfo, path: str,
                         caller: Caller | None) -> WebSocketTarget:
        """How to open ``path`` on ``member`` as a websocket: its pinned TLS, the member token,
        ``caller``'s name for a user (None: as the cluster, an administrator there)."""
        headers = self._member_headers(member)
        if caller is not None and caller.user:
            headers[AS_USER] = caller.name
        assert member.url is not None and member.cert_pem is not None
        if member.url.startswith("https://"):
            url, context = "wss://" + member.url[len("https://"):], pinned_context(
                member.cert_pem)
        else:
            url, context = "ws://" + member.url.split("://", 1)[-1], None
        return WebSocketTarget(member.node, url.rstrip("/") + path, headers, context)

    def websocket_targets(self, path: str) -> list[WebSocketTarget]:
        """``path`` on every other online member, as the cluster (members that published no
        TLS API are left out)."""
        found = []
        for member in self.store().members():
            if member.node != self.node and member.online:
                with contextlib.suppress(CorralError):
                    found.append(self.websocket_target(member.info, path, None))
        return found

    def _member_headers(self, member: NodeInfo) -> dict[str, str]:
        if member.url is None or member.cert_pem is None:
            raise HostFailure(f"member '{member.node}' has no TLS API (corrald --listen): "
                              "requests for its instances cannot be forwarded")
        secret = self.secret()
        if secret is None:
            raise HostFailure("this member does not know the cluster's member token")
        return {"authorization": f"Bearer {secret}", FORWARDED_BY: self.node}

    def _transport(self, member: NodeInfo) -> HttpTransport:
        assert member.url is not None and member.cert_pem is not None
        key = (member.node, member.cert_pem)
        with self._lock:
            found = self._transports.get(key)
            if found is None:
                found = HttpTransport(member.url, headers={}, timeout=330.0,
                                      verify=pinned_context(member.cert_pem), trust_env=False)
                self._transports[key] = found
            return found

    def _remember_operation(self, node: str, data: bytes) -> None:
        """An operation started there is followed there (``corral start`` waits on it)."""
        try:
            answer: Any = json.loads(data)
        except ValueError:
            return
        if isinstance(answer, dict) and isinstance(answer.get("id"), str) \
                and "action" in answer and "status" in answer:
            with self._lock:
                self._operations[answer["id"]] = node
                while len(self._operations) > 10000:
                    self._operations.popitem(last=False)

    # Receive -----------------------------------------------------------------------------
    def member_caller(self, token: str, as_user: str | None) -> Caller | None:
        """The identity of a request another member forwarded (None: not the member token).
        A user this host does not know is refused (CorralError)."""
        secret = self.secret() if self.active else None
        if secret is None or not hmac.compare_digest(token.encode(), secret.encode()):
            return None
        if as_user is None:
            return MEMBER
        found = self.user(as_user)
        if found is None:
            raise CorralError(f"user '{as_user}' does not exist on member '{self.node}'")
        return found
