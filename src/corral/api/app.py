"""The FastAPI application: routers, error mapping, one authorization gate for every route.

Identity comes from the ASGI wrappers in ``identity.py`` (Unix socket: local root; TCP: the
daemon's token or a user's token); the policy is ``services/access.py``. App-wide concerns
are middleware added with ``app.add_middleware``: they wrap every request, lifecycle actions
included (``fastpath.py`` is the innermost middleware).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from corral import __version__
from corral.api import (
    backups,
    bulk,
    capacity,
    convert,
    history,
    host,
    instances,
    networks,
    operations,
    resources,
    streams,
    users,
)
from corral.api.audit import AuditLog
from corral.api.audit import router as audit_router
from corral.api.cluster import router as cluster_router
from corral.api.deps import authorize
from corral.api.fastpath import LifecycleFastPath
from corral.api.forward import ClusterForwarding
from corral.api.groups import router as groups_router
from corral.api.identity import LocalAdmin, TokenAuth
from corral.api.migration import router as migration_router
from corral.api.storage import router as storage_router
from corral.domain.errors import CorralError
from corral.services.core import Corral

__all__ = ["LocalAdmin", "TokenAuth", "create_app"]


def create_app(corral: Corral) -> FastAPI:
    app = FastAPI(title="Corral", version=__version__, description="VMs and containers, one API",
                  dependencies=[Depends(authorize)])
    app.state.corral = corral
    # The first middleware added is the innermost (Starlette puts each later one outside):
    # lifecycle actions skip only the routing below it, never an app-wide middleware.
    app.add_middleware(LifecycleFastPath, corral=corral)
    # outside the fast path: another member's instance is forwarded before it (api/forward)
    app.add_middleware(ClusterForwarding, corral=corral)
    app.add_middleware(AuditLog, corral=corral)  # outermost: sees every call
    # resources before networks: its /metrics page includes the traffic counters
    for module in (instances, operations, host, capacity, streams, resources, networks,
                   backups, users, history, bulk):
        app.include_router(module.router)
    app.include_router(storage_router)
    app.include_router(migration_router)
    app.include_router(cluster_router)
    app.include_router(groups_router)
    app.include_router(audit_router)

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        return convert.error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid", "message": convert.validation(exc)},
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own answers (no such route, wrong method) in Corral's error form."""
        code = convert.HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse({"error": code, "message": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.get("/api/v1/version")
    def version() -> dict[str, str]:
        return {"version": __version__}

    return app
