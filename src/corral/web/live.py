"""``/ui/events``: the events bus as a websocket for the console's live parts (states,
counters, the dashboard's event list). It runs as the session's user through the same
gate as the API's ``/events`` (``api.identity.serve_as``: admins and operators), and only
for pages of this origin (a cross-site page cannot open it with the user's cookie)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket

from corral.api.deps import corral_ws
from corral.api.identity import CALLER
from corral.api.streams import serve_events
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)


def same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    return origin is not None and host is not None and urlsplit(origin).netloc == host


@router.websocket("/events")
async def events(websocket: WebSocket) -> None:
    if CALLER not in websocket.scope or not same_origin(websocket):
        await websocket.close(code=4401 if CALLER not in websocket.scope else 4403)
        return
    app = corral_ws(websocket)
    await websocket.accept()
    await serve_events(websocket, app)
