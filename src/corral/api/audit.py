"""The audit log: an ASGI middleware that records every mutating API call, and
``GET /api/v1/audit`` (administrators only, by the policy's default) to read it.

A call is mutating when its method is not GET/HEAD/OPTIONS. The entry says who (the caller,
and the scoped token's id), from where (the TCP peer, or the Unix socket), what (method,
path, the route's name as the action, the instance it names in its path or body), and the
result (the status: ok, refused for 4xx, failed for 5xx, with the error's message). It is
written (off the event loop) before the last byte of the answer goes out, so a caller that
has its answer finds the entry; a failure to write it is logged and never fails the call.
Requests refused before an identity is known (a wrong token) are not in it: they are the
failed-auth limiter's concern.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from corral.api.deps import corral
from corral.api.fastpath import PREFIX, ROUTE_NAMES
from corral.api.identity import CALLER, ASGIApp, Receive, Scope, Send
from corral.domain.users import Caller
from corral.services.audit import result_of
from corral.services.core import Corral
from corral.services.types import AuditEntry
from corral.wire.users import AuditEntryModel

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["audit"])
App = Annotated[Corral, Depends(corral)]
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_BODY_KEEP = 16384
_MESSAGE_KEEP = 4096


@router.get("/audit", response_model=list[AuditEntryModel])
def list_audit(
    app: App, user: str | None = None, instance: str | None = None,
    since: str | None = None, action: str | None = None, result: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[AuditEntryModel]:
    """Mutating calls, newest first; ``since``: a time or a span ago (30m, 2h, 7d)."""
    return [AuditEntryModel(
        id=e.id, at=e.at.isoformat() + "Z", user=e.user, role=e.role, token=e.token,
        source=e.source, method=e.method, path=e.path, action=e.action, instance=e.instance,
        status=e.status, result=e.result, message=e.message,
    ) for e in app.audit.query(user, instance, since, action, result, limit)]


class AuditLog:
    """ASGI middleware (``app.add_middleware(AuditLog, corral=...)``), outside the fast path."""

    def __init__(self, app: ASGIApp, corral: Corral) -> None:
        self.app = app
        self.corral = corral

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        answer: dict[str, Any] = {"status": 500, "body": bytearray(), "written": False}
        at = datetime.now(UTC).replace(tzinfo=None)

        async def tee_receive() -> Any:
            message = await receive()
            if message.get("type") == "http.request" and len(body) < _BODY_KEEP:
                body.extend(message.get("body", b"")[:_BODY_KEEP - len(body)])
            return message

        async def write() -> None:
            if not answer["written"]:
                answer["written"] = True
                entry = _entry(scope, at, bytes(body), answer["status"], bytes(answer["body"]))
                if entry is not None:
                    await asyncio.to_thread(self._write, entry)

        async def tee_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                if answer["status"] >= 400 and len(answer["body"]) < _MESSAGE_KEEP:
                    answer["body"].extend(message.get("body", b"")[:_MESSAGE_KEEP])
                if not message.get("more_body", False):
                    await write()  # before the answer ends: a caller reads its own entry
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        finally:
            await write()  # the call raised, or the client left before the answer ended

    def _write(self, entry: AuditEntry) -> None:
        try:
            self.corral.audit.record(entry)
        except Exception:  # the call itself succeeded or failed on its own: never fail it
            log.exception("cannot write the audit log entry for %s %s", entry.method,
                          entry.path)


def _entry(scope: Scope, at: datetime, body: bytes, status: int, answer: bytes
           ) -> AuditEntry | None:
    caller = scope.get(CALLER)
    if not isinstance(caller, Caller):
        return None
    path = str(scope.get("path", ""))
    route = scope.get("route")
    action = getattr(route, "name", None) or _fast_action(path) or "unknown"
    return AuditEntry(
        at=at, user=caller.name, role=caller.role.value,
        token=caller.token,
        source=_source(scope), method=str(scope.get("method", "?")), path=path[:512],
        action=str(action)[:64], instance=_instance(route, scope, body), status=status,
        result=result_of(status), message=_message(answer) if status >= 400 else None,
    )


def _source(scope: Scope) -> str:
    client = scope.get("client")
    if client and client[0]:
        return f"{client[0]}:{client[1]}"[:64]
    return "unix socket"


def _fast_action(path: str) -> str | None:
    """A lifecycle call answered by the fast path (no route on the scope)."""
    if path.startswith(PREFIX):
        verb = path[len(PREFIX):].split("/")[-1]
        return ROUTE_NAMES.get(verb)
    return None


def _instance(route: Any, scope: Scope, body: bytes) -> str | None:
    """The instance the call names: in its path (``/instances/{ref}``...), else a create's
    or a backup's body (``name``/``instance``)."""
    route_path = str(getattr(route, "path", ""))
    params = scope.get("path_params") or {}
    if route_path.startswith("/api/v1/instances/{ref}") or route is None:
        if "ref" in params:
            return str(params["ref"])[:63]
        path = str(scope.get("path", ""))
        if path.startswith(PREFIX):
            return path[len(PREFIX):].split("/")[0][:63] or None
    if "instance" in params:
        return str(params["instance"])[:63]
    if route_path in ("/api/v1/instances", "/api/v1/backups"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if isinstance(data, dict):
            found = data.get("name") if route_path == "/api/v1/instances" else data.get(
                "instance")
            return str(found)[:63] if isinstance(found, str) else None
    return None


def _message(answer: bytes) -> str | None:
    try:
        data = json.loads(answer)
    except ValueError:
        return answer.decode(errors="replace")[:512] or None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:512]
    return None
