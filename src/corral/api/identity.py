"""Who is calling: ASGI wrappers that put the caller on every request's scope.

* ``LocalAdmin`` wraps the Unix socket: it is mode 0600 and owned by root, which is the
  authentication for local administrators. A request that carries a bearer token (the CLI
  sends $CORRAL_TOKEN) runs as that token's identity instead, as it would over TCP: root may
  act as a user to see what the user sees, and a token is never ignored without a word.
* ``TokenAuth`` wraps TCP listeners: every request needs ``Authorization: Bearer <token>``,
  either the daemon's own token (an administrator: operators and migration peers use it), a
  user's token (that user, with its role), or the cluster's member token on a request another
  member forwarded (an administrator, or the user ``X-Corral-As-User`` names:
  services/forwarding.py). Anything else is 401. Each wrong token (not
  a missing one: a browser's stray request for /favicon.ico guesses nothing) counts as a
  failure of the client's address in the daemon's one failed-auth limiter
  (``services/authlimit.py``, shared with the web console's login); an address over the
  limit gets 429 before its token is looked at.

The routes never see an unidentified request: ``deps.caller`` refuses one (fail closed).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from corral.domain.errors import CorralError, Forbidden
from corral.domain.users import DAEMON_TOKEN, LOCAL_ROOT, Caller
from corral.services.access import Access
from corral.services.authlimit import FailedAuthLimiter, wait_message
from corral.services.operations import requester

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Authenticate = Callable[[str], Caller | None]
MemberAuth = Callable[[str, str | None], Caller | None]
"""(token, the X-Corral-As-User header) -> the forwarded request's identity, None if the
token is not the cluster's member token; a CorralError refuses it with its message."""

CALLER = "corral.caller"
"""The scope key holding the request's ``Caller``."""


async def serve_as(caller: Caller, app: ASGIApp, scope: Scope, receive: Receive,
                   send: Send) -> None:
    """Run the request as ``caller`` (every surface's identity wrapper ends here, the web
    console's sessions too): on the scope, in the operations' requester, and websockets
    only for those the policy lets watch events and open consoles."""
    scope[CALLER] = caller
    if scope["type"] == "websocket" and not Access(caller).admin:  # scoped tokens too
        await _refuse_websocket(caller, scope, receive, send)
        return
    marker = requester.set(caller.name if caller.user else None)
    try:
        await app(scope, receive, send)
    finally:
        requester.reset(marker)


async def _refuse_websocket(caller: Caller, scope: Scope, receive: Receive,
                            send: Send) -> None:
    """Accept, then close with the reason (a refused handshake could not carry one)."""
    what = "watch events" if str(scope.get("path", "")).endswith("/events") else "open consoles"
    try:
        Access(caller).websocket(what)
    except Forbidden as exc:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4403, "reason": exc.message[:120]})


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


def _presented(scope: Scope) -> bytes | None:
    """The request's bearer token, if it has one."""
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value.startswith(b"Bearer "):
            return bytes(value[7:].strip())
    return None


async def _identify(presented: bytes, daemon_token: bytes | None,
                    authenticate: Authenticate) -> Caller | None:
    """The daemon's token, a user's token, or None (wrong)."""
    if daemon_token is not None and hmac.compare_digest(presented, daemon_token):
        return DAEMON_TOKEN
    try:
        token = presented.decode("ascii")
    except UnicodeDecodeError:
        return None
    return await asyncio.to_thread(authenticate, token)


async def _unauthorized(scope: Scope, send: Send, message: str, status: int = 401,
                        error: str = "unauthorized", retry_after: float = 0) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status})
        return
    body = json.dumps({"error": error, "message": message}).encode()
    headers = [(b"content-type", b"application/json")]
    headers.append((b"www-authenticate", b"Bearer") if status == 401 else
                   (b"retry-after", str(max(int(retry_after + 0.999), 1)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class LocalAdmin:
    """The Unix socket's wrapper: local root's, or the identity of the token it carries."""

    def __init__(self, app: ASGIApp, token: str | None = None,
                 authenticate: Authenticate = lambda _token: None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        presented = _presented(scope)
        if presented is None:
            await serve_as(LOCAL_ROOT, self.app, scope, receive, send)
            return
        caller = await _identify(presented, self.token, self.authenticate)
        if caller is None:
            await _unauthorized(scope, send, (
                "wrong API token (CORRAL_TOKEN): on the Unix socket a token acts as its user "
                "or as the daemon's token; unset it to act as local root"))
            return
        await serve_as(caller, self.app, scope, receive, send)


class TokenAuth:
    """ASGI wrapper for TCP listeners: the daemon's token or a user's token, else 401."""

    def __init__(self, app: ASGIApp, token: str,
                 authenticate: Authenticate = lambda _token: None,
                 limiter: FailedAuthLimiter | None = None,
                 member: MemberAuth | None = None) -> None:
        self.app = app
        self.token = token.encode()
        self.authenticate = authenticate
        self.limiter = limiter if limiter is not None else FailedAuthLimiter()
        self.member = member

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        wait = self.limiter.blocked(address)
        if wait is not None:
            self.limiter.refused(address, "api")
            await _unauthorized(scope, send, wait_message(wait), 429, "rate_limited", wait)
            return
        presented = _presented(scope)
        caller = None if presented is None else await _identify(
            presented, self.token, self.authenticate)
        if caller is None and presented is not None and self.member is not None:
            try:
                caller = await asyncio.to_thread(
                    self.member, presented.decode("latin-1"),
                    _header(scope, b"x-corral-as-user"))
            except CorralError as exc:
                await _unauthorized(scope, send, exc.message)
                return
        if caller is None:
            if presented is not None:  # a guess; a request without a token guesses nothing
                self.limiter.failed(address, "api")
            await _unauthorized(scope, send, "missing or wrong API token")
            return
        await serve_as(caller, self.app, scope, receive, send)
