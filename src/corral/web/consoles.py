"""Consoles in the browser: the serial console (xterm.js) of any instance and the VNC
display (noVNC) of a VM that has one.

The page (``/ui/instances/NAME/console`` or ``.../vnc``) asks for a one-use ticket with a
CSRF-checked POST (``services/tickets.py``: issued through the API's policy for the
``console`` and ``vnc`` actions), then opens ``/ui/consoles/serial`` or ``/ui/consoles/vnc``
with it. The websocket checks its origin (a page of this site only) and redeems the ticket:
its caller, instance and kind are what was granted, nothing the socket says. A serial viewer
attaches to the instance's shared console (``services/consoles.py``) with its recent output
replayed, so a reload shows the screen again and two viewers see the same console; a VNC
viewer gets its own connection to QEMU's VNC server, which serves several clients itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from corral.api.deps import corral_ws
from corral.api.identity import CALLER
from corral.api.streams import serve_console
from corral.domain.errors import CorralError
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.services.foreign import vnc_socket
from corral.services.operations import requester
from corral.web.instance import view_of
from corral.web.live import same_origin
from corral.web.pages import Ctx
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)


def _console_page(page: Ctx, name: str, kind: str) -> HTMLResponse:
    view = view_of(page, name)
    page.require("console" if kind == "serial" else "vnc")
    rec = view.record
    return page.render("console.html", view=view, rec=rec, kind=kind,
                       running=view.state in (State.RUNNING, State.SUSPENDED),
                       vm=rec.kind is Kind.VM)


@router.get("/instances/{name}/console", response_class=HTMLResponse)
def serial_page(page: Ctx, name: str) -> HTMLResponse:
    return _console_page(page, name, "serial")


@router.get("/instances/{name}/vnc", response_class=HTMLResponse)
def vnc_page(page: Ctx, name: str) -> HTMLResponse:
    return _console_page(page, name, "vnc")


@router.post("/instances/{name}/console/ticket")
async def ticket(page: Ctx, name: str, kind: Annotated[str, Query()] = "serial"
                 ) -> JSONResponse:
    """A one-use ticket for the console websocket (JSON: ``ticket``, ``url``)."""
    app = page.app
    token = await run_in_threadpool(app.tickets.issue, page.caller, kind, name,
                                    app.store.get_instance)
    return JSONResponse({"ticket": token, "url": f"{PATH}/consoles/{kind}"},
                        headers={"cache-control": "no-store"})


async def _redeem(websocket: WebSocket, kind: str, token: str) -> str | None:
    """Accept the websocket if this site's page presents a good ticket, and run it as the
    ticket's caller (as ``api.identity.serve_as`` runs a request); else close it with the
    reason and return None."""
    subprotocols = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="binary" if "binary" in subprotocols else None)
    if not same_origin(websocket):
        await websocket.close(code=4403, reason="consoles open only from this site's pages")
        return None
    app = corral_ws(websocket)
    try:
        granted = app.tickets.redeem(token, kind)
    except CorralError as exc:
        await websocket.close(code=4403, reason=exc.message[:120])
        return None
    websocket.scope[CALLER] = granted.caller
    requester.set(granted.caller.name if granted.caller.user else None)
    return granted.instance


@router.websocket("/consoles/serial")
async def serial(websocket: WebSocket, ticket: str = "") -> None:
    name = await _redeem(websocket, "serial", ticket)
    if name is not None:
        await serve_console(websocket, corral_ws(websocket), name, replay=True, controls=True)


@router.websocket("/consoles/vnc")
async def vnc(websocket: WebSocket, ticket: str = "") -> None:
    name = await _redeem(websocket, "vnc", ticket)
    if name is None:
        return
    app = corral_ws(websocket)
    try:
        path = await asyncio.to_thread(vnc_socket, app.instances, name)
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (CorralError, OSError) as exc:
        reason = exc.message if isinstance(exc, CorralError) else str(exc)
        await websocket.close(code=4409, reason=reason[:120])
        return

    async def from_vm() -> None:
        while data := await reader.read(65536):
            await websocket.send_bytes(data)
        await websocket.close(code=1000, reason="the VNC server closed")

    async def to_vm() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            payload = message.get("bytes") or (message.get("text") or "").encode()
            if payload:
                writer.write(payload)
                await writer.drain()

    tasks = [asyncio.create_task(from_vm()), asyncio.create_task(to_vm())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
