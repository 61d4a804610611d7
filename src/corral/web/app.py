"""The console's ASGI app (``/ui/...``): pages, the login, static assets, error pages.

``create_console`` builds it; the daemon serves it on the TLS listener beside the API
(``mount.ConsoleBeside``), wrapped in ``session.SessionAuth``. Every response carries a
strict Content-Security-Policy: scripts and styles come from ``/ui/static`` only (htmx runs
with ``allowEval`` off), so an injected string cannot run; the console pages allow inline
styles (``CONSOLE_CSP``), never inline scripts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from corral.api.deps import Unauthorized
from corral.api.identity import ASGIApp, Receive, Scope, Send
from corral.domain.errors import CorralError
from corral.services.core import Corral
from corral.web import (
    bulk,
    consoles,
    dashboard,
    graphs,
    infra,
    infra_changes,
    instance,
    instance_move,
    instances,
    live,
    login,
    operations,
    users,
)
from corral.web.pages import HERE, render_template
from corral.web.session import PATH, csrf_guard

log = logging.getLogger("corral.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'{styles}; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
STRICT_CSP = (b"content-security-policy", CSP.format(styles="").encode())
CONSOLE_CSP = (b"content-security-policy", CSP.format(styles=" 'unsafe-inline'").encode())
"""The console pages' policy: xterm.js adds ``<style>`` elements of its own (its theme and
cell sizes), which carry no nonce; inline styles are allowed there, scripts never."""
CONSOLE_PAGE = re.compile(rf"^{PATH}/instances/[^/]+/(console|vnc)$")

SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        static = path.startswith(f"{PATH}/static/")
        csp = CONSOLE_CSP if CONSOLE_PAGE.match(path) else STRICT_CSP

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), csp, *SECURITY_HEADERS]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_console(corral: Corral, secure: bool = True) -> FastAPI:
    """``secure``: cookies carry ``Secure`` (False only for ``--insecure-http``)."""
    app = FastAPI(title="Corral console", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(csrf_guard)])
    app.state.corral = corral
    app.state.secure = secure
    static = HERE / "static"
    if not (static / "vendor" / "htmx" / "htmx.min.js").exists():
        log.warning("the web console's assets are missing (%s): run "
                    "scripts/build-web-assets.sh", static / "vendor")
    app.mount(f"{PATH}/static", StaticFiles(directory=static), name="static")
    for module in (login, dashboard, instances, bulk, instance, instance_move, consoles,
                   graphs, infra, infra_changes, operations, users, live):
        app.include_router(module.router)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, _exc: Unauthorized) -> Response:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        to = f"{PATH}/login?next={back}" if request.method == "GET" else f"{PATH}/login"
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": to})
        if request.method == "GET":
            return RedirectResponse(to, status_code=303)
        return render_template("error.html", {"status": 401, "message":
                               "not logged in (or the session expired)", "me": None}, 401)

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> Response:
        return render_template("error.html", {"status": exc.status, "message": exc.message,
                                              "me": None}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        message = f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', '')}"
        return render_template("error.html", {"status": 400, "message": message, "me": None},
                               400)

    return app


def console_app(corral: Corral, secure: bool = True) -> ASGIApp:
    """The console as the listener serves it: security headers, then sessions, then pages."""
    from corral.web.session import SessionAuth

    return SecurityHeaders(SessionAuth(create_console(corral, secure), corral.users))
