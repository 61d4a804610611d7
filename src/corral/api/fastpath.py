"""Lifecycle actions answered before FastAPI's routing and dependency resolution.

``POST /api/v1/instances/{ref}/{start|stop|restart|suspend|resume}[?wait=S]`` is on the
critical path of every start and stop (bench/start.py). Between the ASGI call and the route
function, Starlette's middleware and routing and FastAPI's request handling (five
dependencies, the query's validation) took ~0.4 ms of a start's ~3 ms of daemon-side
Python on this host (trace in docs/architecture.md, "Start-path costs").

This wrapper sits inside the identity wrappers (``identity.py``: the caller is on the scope)
and answers exactly those requests with what the routes in ``instances.py`` do: the same
policy gate (``Access.require`` with the route's name), the same handler (``answer``), the
same error body as the app's ``CorralError`` handler. Everything else -- and any such
request it does not fully understand (another query parameter, a ``wait`` out of range, a
body that is not a ``StopRequest``) -- goes to FastAPI, whose routes stay the API's
definition and its OpenAPI schema.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from corral.api.identity import CALLER, ASGIApp, Receive, Scope, Send
from corral.api.instances import WAIT_MAX, answer, lifecycle
from corral.domain.errors import CorralError
from corral.domain.users import Caller
from corral.services.access import Access
from corral.services.core import Corral
from corral.wire.models import StopRequest

PREFIX = "/api/v1/instances/"
ROUTE_NAMES = {
    "start": "start_instance",
    "stop": "stop_instance",
    "restart": "restart_instance",
    "suspend": "suspend_instance",
    "resume": "resume_instance",
}
"""The action in the path → the name of its route in ``instances.py`` (the policy's action)."""
_WITH_BODY = {"stop", "restart"}
_BODY_LIMIT = 4096


class LifecycleFastPath:
    def __init__(self, app: ASGIApp, corral: Corral) -> None:
        self.app = app
        self.corral = corral

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        action = _action(scope)
        if action is None:
            await self.app(scope, receive, send)
            return
        ref, verb = action
        wait = _wait(scope.get("query_string", b""))
        stop: StopRequest | None = StopRequest()
        if verb in _WITH_BODY:  # the other routes take no body (FastAPI does not read it)
            body, receive = await _body(receive)
            stop = _stop_request(body, scope)
        if wait is None or stop is None:
            await self.app(scope, receive, send)  # FastAPI answers (422 and the like)
            return
        caller = scope.get(CALLER)
        try:
            if not isinstance(caller, Caller):
                await self.app(scope, receive, send)  # deps.caller refuses it (401)
                return
            Access(caller).require(ROUTE_NAMES[verb])
            response = await answer(self.corral, lifecycle(self.corral, ref, verb, stop), wait)
        except CorralError as exc:  # as the app's handler renders it
            response = JSONResponse({"error": exc.code, "message": exc.message},
                                    status_code=exc.status)
        await response(scope, receive, send)


def _action(scope: Scope) -> tuple[str, str] | None:
    """(ref, verb) of a lifecycle POST, else None."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    path: str = scope.get("path", "")
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX):].split("/")
    if len(parts) != 2 or not parts[0] or parts[1] not in ROUTE_NAMES:
        return None
    return parts[0], parts[1]


def _wait(query: bytes) -> float | None:
    """Seconds from ``wait=S`` (or 0 without a query); None for anything else."""
    if not query:
        return 0.0
    key, sep, value = query.partition(b"=")
    if key != b"wait" or not sep or b"&" in value:
        return None
    try:
        wait = float(value)
    except ValueError:
        return None
    return wait if math.isfinite(wait) and 0 <= wait <= WAIT_MAX else None


async def _body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The request body (None if larger than a lifecycle body can be), and a ``receive``
    that hands what was read out again to whoever answers instead."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return None, _replay(message, None)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > _BODY_LIMIT:
            break
    body = b"".join(chunks)
    read = {"type": "http.request", "body": body, "more_body": more}
    return (None if more else body), _replay(read, receive)


def _replay(first: MutableMapping[str, Any], then: Receive | None) -> Receive:
    """``first``, then what ``then`` receives (without ``then``: a disconnect)."""
    pending = [first]

    async def receive() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop()
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def _stop_request(body: bytes | None, scope: Scope) -> StopRequest | None:
    """The stop/restart body as FastAPI would read it (none: the defaults); None if it is
    anything FastAPI should judge."""
    if body is None:
        return None
    if not body.strip():
        return StopRequest()
    headers = dict(scope.get("headers") or [])
    if not headers.get(b"content-type", b"").startswith(b"application/json"):
        return None
    try:
        return StopRequest.model_validate_json(body)
    except ValidationError:
        return None
