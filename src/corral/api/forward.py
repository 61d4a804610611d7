"""Forwarding at the API's edge: a request for an instance another cluster member holds
goes to that member (``services/forwarding.py`` decides where and sends it), and so do
the operation and migration record a forwarded request started there.

Added after the lifecycle fast path, so outside it: a start of a remote instance is
forwarded before this host's fast path or routes see it. On a single host (or for a local
instance) it costs one attribute read (plus, in a cluster, one look-up of the name in this
host's database). A request another member forwarded is never forwarded again. An
instance's console websocket is proxied to its member the same way (``api/member_ws.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

from corral.api.identity import CALLER, ASGIApp, Receive, Scope, Send
from corral.api.member_ws import proxy
from corral.domain.errors import CorralError
from corral.domain.users import Caller
from corral.services.forwarding import FORWARDED_BY

if TYPE_CHECKING:
    from corral.services.core import Corral

_INSTANCE = re.compile(r"^/api/v1/instances/([^/]+)(?:/.*)?$")
_CONSOLE = re.compile(r"^/api/v1/instances/([^/]+)/console$")
_OPERATION = re.compile(r"^/api/v1/(?:operations|migrations)/([^/]+)(?:/.*)?$")


class ClusterForwarding:
    def __init__(self, app: ASGIApp, corral: Corral) -> None:
        self.app = app
        self.forwarder = corral.cluster.forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.forwarder.active:
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http" or not self.forwarder.active:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        instance = _INSTANCE.match(path)
        operation = None if instance else _OPERATION.match(path)
        if (instance is None and operation is None) or any(
                name == FORWARDED_BY.encode() for name, _ in scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        try:
            if instance is not None:
                member = await asyncio.to_thread(self.forwarder.target, instance.group(1))
            else:
                assert operation is not None
                member = self.forwarder.operation_target(operation.group(1))
        except CorralError:  # the store cannot say: serve it here (a local 404 at worst)
            member = None
        if member is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        caller: Caller = scope[CALLER]
        content_type = next((v.decode("latin-1") for n, v in scope.get("headers", [])
                             if n == b"content-type"), None)
        try:
            answer = await asyncio.to_thread(
                self.forwarder.forward, member, scope["method"], path,
                scope.get("query_string", b"").decode("latin-1"), body, content_type, caller)
            status, data = answer.status, answer.body
        except CorralError as exc:
            status = exc.status
            data = json.dumps({"error": exc.code, "message": exc.message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"x-corral-node", member.node.encode())]})
        await send({"type": "http.response.body", "body": data})


    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An instance's console on another member: proxied there (``api/member_ws.py``)."""
        path: str = scope["path"]
        console = _CONSOLE.match(path)
        if console is None or _forwarded(scope):
            await self.app(scope, receive, send)
            return
        try:
            member = await asyncio.to_thread(self.forwarder.target, console.group(1))
        except CorralError:
            member = None
        if member is None:
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            target = self.forwarder.websocket_target(
                member, path + (f"?{query}" if query else ""), scope.get(CALLER))
        except CorralError as exc:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4000 + exc.status % 1000,
                        "reason": exc.message[:120]})
            return
        await proxy(target, receive, send)


def _forwarded(scope: Scope) -> bool:
    return any(name == FORWARDED_BY.encode() for name, _ in scope.get("headers", []))


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
