"""Request-scoped access to the daemon's services, the caller and its policy.

The dependencies are ``async`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, one thread hop each, on every request (measured: ~0.4 ms
apiece on this host, three or four per request); these only read the scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from corral.api.identity import CALLER
from corral.domain.errors import CorralError
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


async def authorize(connection: HTTPConnection, policy: Annotated[Access, Depends(access)]) -> None:
    """Every route's gate (an app-wide dependency): the route's name is the action the
    policy allows or refuses. Object-level checks (whose instance, whose backup) are made
    by the few routes owners may call, through the same policy."""
    route = connection.scope.get("route")
    name = getattr(route, "name", None)
    if connection.scope["type"] == "websocket":
        return  # identity.py refused non-admins before routing
    policy.require(str(name) if name else connection.scope.get("path", "?"))


Policy = Annotated[Access, Depends(access)]
