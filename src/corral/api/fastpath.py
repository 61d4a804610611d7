"""Lifecycle actions answered before FastAPI's routing and dependency resolution.

``POST /api/v1/instances/{ref}/{start|stop|restart|suspend|resume}[?wait=S]`` is on the
critical path of every start and stop (bench/start.py). Between the ASGI call and the route
function, Starlette's routing and FastAPI's request handling (five dependencies, the query's
validation) took ~0.4 ms of a start's ~3 ms of daemon-side Python on this host
(docs/perf-log.md, "Start-path costs").

It is the app's **innermost middleware** (``create_app`` adds it first; Starlette puts each
later ``add_middleware`` outside the earlier ones): every app-wide concern -- an audit log,
a rate limit, a request id, request metrics -- added with ``app.add_middleware`` sees
lifecycle actions exactly as it sees every other route; only the routing and the dependency
resolution below it are skipped. The identity wrappers (``identity.py``) put the caller on
the scope before the app is reached.

It answers exactly those requests with what the routes in ``instances.py`` do: the same
policy gate (``Access.require`` with the route's name, read from the routes themselves), the
same handler (``answer``), the same error body (``convert.error``). Everything else -- and any
such request it does not fully understand (another query parameter, a ``wait`` out of
range, a body that is not a ``StopRequest``) -- goes on to FastAPI, whose routes stay the
API's definition and its OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import MutableMapping
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError

from corral.api import convert, instances
from corral.api.deps import named_instance
from corral.api.identity import CALLER, ASGIApp, Receive, Scope, Send
from corral.api.instances import WAIT_MAX, answer, lifecycle
from corral.domain.errors import CorralError
from corral.domain.users import Caller
from corral.services.access import Access
from corral.services.core import Corral
from corral.wire.models import StopRequest

PREFIX = instances.router.prefix + "/"
VERBS = ("start", "stop", "restart", "suspend", "resume")
"""The lifecycle actions, as the last segment of their paths."""


def _route_names() -> dict[str, str]:
    """The action in the path -> the name of its route in ``instances.py``, which is the
    action FastAPI's gate (``deps.authorize``) asks the policy about: read from the routes,
    so the fast path asks for the very same (one source of the names)."""
    names = {}
    for route in instances.router.routes:
        if isinstance(route, APIRoute) and route.methods == {"POST"}:
            verb = route.path.rsplit("/", 1)[-1]
            if verb in VERBS and route.path == f"{PREFIX}{{ref}}/{verb}":
                names[verb] = route.name
    missing = set(VERBS) - set(names)
    if missing:  # the fast path would answer what FastAPI no longer defines
        raise RuntimeError(f"instances.py has no route for {sorted(missing)}")
    return names


ROUTE_NAMES = _route_names()
_WITH_BODY = {"stop", "restart"}
_BODY_LIMIT = 4096


class LifecycleFastPath:
    """ASGI middleware (``app.add_middleware(LifecycleFastPath, corral=...)``)."""

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
        if not isinstance(caller, Caller):
            await self.app(scope, receive, send)  # deps.caller refuses it (401)
            return
        try:
            names, instance = False, None
            if caller.instances is not None:
                names, instance = await asyncio.to_thread(
                    named_instance, self.corral, "/api/v1/instances/{ref}", {"ref": ref})
            Access(caller).require(ROUTE_NAMES[verb], "POST", instance, names)
            response = await answer(self.corral, lifecycle(self.corral, ref, verb, stop), wait)
        except CorralError as exc:  # as the app's handler renders it
            response = convert.error(exc)
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
