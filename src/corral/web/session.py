"""Console sessions on the wire: the cookie, the identity it gives a request, CSRF.

``SessionAuth`` wraps the console's ASGI app: a request whose ``corral_session`` cookie
names a live session runs as that session's user (as the user is *now*: a changed role
applies at once, a removed user is logged out) through ``api.identity.serve_as`` like every
other surface; any other request runs without identity, and ``api.deps.caller`` refuses it
wherever a page needs one. Cookies are HttpOnly, SameSite=Strict, Secure (over TLS), and
scoped to ``/ui``. Every request that changes something carries the session's CSRF token
(the ``X-CSRF-Token`` header htmx sends, or a ``csrf_token`` form field): ``csrf_guard``.
"""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from corral.api.identity import ASGIApp, Receive, Scope, Send, serve_as
from corral.domain.errors import Forbidden
from corral.domain.users import Caller
from corral.services.sessions import Session
from corral.services.users import UserService

COOKIE = "corral_session"
LOGIN_COOKIE = "corral_login"
"""The login form's own CSRF token (double-submit: cookie and form field must match)."""
PATH = "/ui"
SESSION = "corral.web.session"
"""The scope key holding the request's ``Session`` (absent: not logged in)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: no cookies
                return {}
    return {key: morsel.value for key, morsel in jar.items()}


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", f"Path={PATH}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class SessionAuth:
    def __init__(self, app: ASGIApp, users: UserService) -> None:
        self.app = app
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        secret = cookies(scope).get(COOKIE)
        found = await asyncio.to_thread(self._identify, secret) if secret else None
        if found is None:
            await self.app(scope, receive, send)
            return
        session, caller = found
        scope[SESSION] = session
        await serve_as(caller, self.app, scope, receive, send)

    def _identify(self, secret: str) -> tuple[Session, Caller] | None:
        """The live session of ``secret`` and its user as the user is now (database reads:
        run off the event loop)."""
        session = self.users.sessions.find(secret)
        caller = None if session is None else self.users.caller(session.user)
        return None if session is None or caller is None else (session, caller)


def session_of(request: HTTPConnection) -> Session | None:
    found: Any = request.scope.get(SESSION)
    return found if isinstance(found, Session) else None


class CsrfRefused(Forbidden):
    code = "csrf"


async def csrf_guard(connection: HTTPConnection) -> None:
    """The console app's app-wide dependency: a change needs the session's CSRF token
    (the login form checks its own: it has no session yet). Websockets change nothing
    here; ``live.py`` checks their origin."""
    if not isinstance(connection, Request):
        return
    request = connection
    if request.method in SAFE_METHODS or request.url.path == f"{PATH}/login":
        return
    session = session_of(request)
    if session is None:
        return  # not logged in: the route's identity dependency answers 401
    presented = request.headers.get("x-csrf-token")
    if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        field = (await request.form()).get("csrf_token")
        presented = field if isinstance(field, str) else None
    if not session.csrf_ok(presented):
        raise CsrfRefused("this request carries no valid CSRF token: reload the page and "
                          "try again")
