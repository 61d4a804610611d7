"""Request-scoped access to the daemon's services, the caller and its policy.

The dependencies are ``async`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, one thread hop each, on every request (measured: ~0.4 ms
apiece on this host, three or four per request); these only read the scope.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from corral.api.identity import CALLER
from corral.domain.errors import CorralError, NotFound
from corral.domain.users import Caller
from corral.services.access import Access
from corral.services.core import Corral


class Unauthorized(CorralError):
    code = "unauthorized"
    status = 401


async def corral(request: Request) -> Corral:
    app: Corral = request.app.state.corral
    return app


def corral_ws(websocket: WebSocket) -> Corral:
    app: Corral = websocket.app.state.corral
    return app


async def caller(connection: HTTPConnection) -> Caller:
    """The identity ``identity.LocalAdmin``/``TokenAuth`` put on the scope; none: 401."""
    found = connection.scope.get(CALLER)
    if not isinstance(found, Caller):
        raise Unauthorized("this request carries no identity")
    return found


async def access(who: Annotated[Caller, Depends(caller)]) -> Access:
    return Access(who)


INSTANCE_ROUTES = ("/api/v1/instances/{ref}", "/api/v1/backup-schedules/{instance}")
"""Route paths whose path parameter names an instance (a scoped token is checked on it)."""


def named_instance(app: Corral, route_path: str, params: dict[str, Any]) -> tuple[bool, str | None]:
    """Does the route name an instance in its path, and which (its name; None if none has
    that name or id)?"""
    for prefix in INSTANCE_ROUTES:
        if route_path == prefix or route_path.startswith(prefix + "/"):
            ref = str(params.get("ref", params.get("instance", "")))
            try:
                return True, app.store.get_instance(ref).name
            except NotFound:
                return True, None
    return False, None


async def authorize(connection: HTTPConnection, policy: Annotated[Access, Depends(access)]) -> None:
    """Every route's gate (an app-wide dependency): the route's name is the action the
    policy allows or refuses (with the request's method and, for a scoped token, the
    instance its path names). Object-level checks (whose instance, whose backup) are made
    by the few routes owners may call, through the same policy."""
    route = connection.scope.get("route")
    name = getattr(route, "name", None)
    if connection.scope["type"] == "websocket":
        return  # identity.py refused non-admins before routing
    method = str(connection.scope.get("method", "GET"))
    action = str(name) if name else connection.scope.get("path", "?")
    names, instance = False, None
    if policy.caller.instances is not None:
        app: Corral = connection.app.state.corral
        names, instance = await asyncio.to_thread(
            named_instance, app, str(getattr(route, "path", "")), connection.path_params)
    policy.require(action, method, instance, names)


Policy = Annotated[Access, Depends(access)]
