"""The TLS listener's one ASGI app: the console under ``/ui`` (session cookies), ``/`` sent
to it, and everything else to the API behind its own identity wrapper (bearer tokens)."""

from __future__ import annotations

from corral.api.identity import ASGIApp, Receive, Scope, Send
from corral.web.session import PATH


class ConsoleBeside:
    def __init__(self, api: ASGIApp, console: ASGIApp) -> None:
        self.api = api
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] in ("http", "websocket"):
            if path == PATH or path.startswith(f"{PATH}/"):
                await self.console(scope, receive, send)
                return
            if path == "/" and scope["type"] == "http" and scope.get("method") == "GET":
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", f"{PATH}/".encode())]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.api(scope, receive, send)
