"""Request-scoped access to the daemon's services."""

from __future__ import annotations

from fastapi import Request, WebSocket

from corral.services.core import Corral


def corral(request: Request) -> Corral:
    app: Corral = request.app.state.corral
    return app


def corral_ws(websocket: WebSocket) -> Corral:
    app: Corral = websocket.app.state.corral
    return app
