"""``/ui/events``: the events bus as a websocket for the console's live parts (states,
counters, the dashboard's event list). It runs as the session's user through the same
gate as the API's ``/events`` (``api.identity.serve_as``: admins and operators), and only
for pages of this origin (a cross-site page cannot open it with the user's cookie)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from corral.api.deps import corral_ws
from corral.api.identity import CALLER
from corral.services.events import Subscription
from corral.web.session import PATH
from corral.wire.models import Event

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
    sub: Subscription = app.events.subscribe()
    closed = asyncio.create_task(_until_disconnect(websocket))
    getter: asyncio.Task[Event | None] | None = None
    try:
        while not closed.done():
            getter = asyncio.create_task(asyncio.to_thread(sub.get, 1.0))
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                break
            event = getter.result()
            if event is not None:
                await websocket.send_text(event.model_dump_json())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (closed, getter):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            sub.close()


async def _until_disconnect(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
