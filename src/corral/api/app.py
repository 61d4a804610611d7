"""The FastAPI application: routers, error mapping, token auth for TCP listeners."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from corral import __version__
from corral.api import backups, host, instances, networks, operations, resources, streams
from corral.api.migration import router as migration_router
from corral.api.storage import router as storage_router
from corral.domain.errors import CorralError
from corral.services.core import Corral

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(corral: Corral) -> FastAPI:
    app = FastAPI(title="Corral", version=__version__, description="VMs and containers, one API")
    app.state.corral = corral
    # resources before networks: its /metrics page includes the traffic counters
    for module in (instances, operations, host, streams, resources, networks, backups):
        app.include_router(module.router)
    app.include_router(storage_router)
    app.include_router(migration_router)

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    @app.get("/api/v1/version")
    def version() -> dict[str, str]:
        return {"version": __version__}

    return app


class TokenAuth:
    """ASGI wrapper for TCP listeners: every request needs ``Authorization: Bearer <token>``.

    The Unix socket is not wrapped: it is mode 0600 and owned by root, which is the
    authentication for local administrators.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            body = json.dumps(
                {"error": "unauthorized", "message": "missing or wrong API token"}
            ).encode()
            await send({
                "type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer")],
            })
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self.token)
        return False
