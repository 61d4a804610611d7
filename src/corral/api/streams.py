"""WebSockets: the events stream and interactive consoles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from corral.api.deps import corral_ws
from corral.api.member_ws import follow_members
from corral.domain.errors import CorralError
from corral.services.consoles import Viewer
from corral.services.core import Corral
from corral.services.events import Subscription
from corral.services.forwarding import FORWARDED_BY
from corral.wire.models import Event

router = APIRouter(tags=["streams"])
log = logging.getLogger("corral.api.streams")


@router.websocket("/events")
async def events(websocket: WebSocket) -> None:
    app = corral_ws(websocket)
    await websocket.accept()
    await serve_events(websocket, app)


async def serve_events(websocket: WebSocket, app: Corral) -> None:
    """Send every event of the bus to an accepted websocket until it goes away (the API's
    ``/events`` and the web console's ``/ui/events``). In a cluster, each event carries its
    member (``node``) and the other members' events are merged in (``api/member_ws.py``),
    unless another member asked (it merges them itself)."""
    sub: Subscription = app.events.subscribe()
    forwarder = app.cluster.forwarder
    node = app.cluster.node if forwarder.active else None
    merged: asyncio.Queue[str] = asyncio.Queue(maxsize=10000)
    followers: list[asyncio.Task[None]] = []
    if node is not None and FORWARDED_BY not in websocket.headers:
        # followed as the cluster (an administrator there): only administrators watch events
        def put(text: str) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader loses events
                merged.put_nowait(text)

        followers.append(asyncio.create_task(follow_members(
            lambda: forwarder.websocket_targets("/events"), put)))
    # the client going away, or the server shutting down (uvicorn then closes the socket and
    # waits for this handler): seen at once, not at the next event -- else a quiet stream
    # kept corrald from stopping
    closed = asyncio.create_task(_until_disconnect(websocket))
    getter: asyncio.Task[Event | None] | None = None
    other: asyncio.Task[str] | None = None
    try:
        while not closed.done():
            if getter is None:
                getter = asyncio.create_task(asyncio.to_thread(sub.get, 1.0))
            if other is None:
                other = asyncio.create_task(merged.get())
            await asyncio.wait({getter, other, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                break  # the getter's thread returns within its 1 s timeout
            if other.done():
                await websocket.send_text(other.result())
                other = None
            if getter.done():
                event = getter.result()
                getter = None
                if event is not None:
                    await websocket.send_text(
                        event.model_dump_json(exclude={"node"}) if node is None else
                        event.model_copy(update={"node": node}).model_dump_json())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (closed, getter, other, *followers):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            sub.close()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Until the client disconnects (anything it sends on the events stream is ignored)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


@router.websocket("/api/v1/instances/{ref}/console")
async def console(websocket: WebSocket, ref: str) -> None:
    """Bytes both ways: binary frames from the guest's console, and to it."""
    app = corral_ws(websocket)
    await websocket.accept()
    await serve_console(websocket, app, ref, replay=False)


MAX_TERMINAL = 1000  # columns or rows a resize may ask for


def _resize_of(text: str) -> tuple[int, int] | None:
    """(cols, rows) of a ``{"resize": [cols, rows]}`` control message; None: not one."""
    try:
        cols, rows = json.loads(text)["resize"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(n, int) and 1 <= n <= MAX_TERMINAL for n in (cols, rows)):
        return None
    return cols, rows


async def serve_console(websocket: WebSocket, app: Corral, ref: str, replay: bool,
                        controls: bool = False) -> None:
    """Attach an accepted websocket to ``ref``'s shared console (``services/consoles.py``:
    one runtime console, any number of viewers); ``replay``: first the console's recent
    output (a reloaded page sees its screen again). ``controls``: text frames are not typed
    but control messages (``{"resize": [cols, rows]}``, answered ``{"resized": bool}``);
    the guest's bytes go in binary frames either way."""
    loop = asyncio.get_running_loop()
    from_guest: asyncio.Queue[bytes] = asyncio.Queue()

    def deliver(data: bytes) -> None:  # on the hub's reader thread
        with contextlib.suppress(RuntimeError):  # the loop is gone: the viewer is too
            loop.call_soon_threadsafe(from_guest.put_nowait, data)

    def attach() -> Viewer:
        view = app.instances.get(ref)
        return app.consoles.attach(view.record.id, lambda: app.instances.open_console(ref),
                                   deliver, replay)

    try:
        viewer = await asyncio.to_thread(attach)
    except CorralError as exc:
        await websocket.close(code=4000 + min(exc.status, 999) % 1000, reason=exc.message[:120])
        return

    async def pump_out() -> None:
        while True:
            data = await from_guest.get()
            if not data:
                await websocket.close(code=1000, reason="console closed")
                return
            await websocket.send_bytes(data)

    async def pump_in() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if controls and message.get("text") is not None:
                size = _resize_of(message["text"])
                done = size is not None and await asyncio.to_thread(viewer.resize, *size)
                await websocket.send_text(json.dumps({"resized": done}))
                continue
            payload = message.get("bytes") or (message.get("text") or "").encode()
            if payload:
                await asyncio.to_thread(viewer.write, payload)

    tasks = [asyncio.create_task(pump_out()), asyncio.create_task(pump_in())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        viewer.close()
