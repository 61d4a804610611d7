"""Websockets across cluster members: a console proxied to the member holding the instance,
and the events of the other members merged into ``/events``.

Console (``proxy``): the client's websocket is accepted here only once the member accepted
the upstream one (over its pinned TLS API, with the member token; ``Forwarder.websocket_target``);
frames go both ways as they come (binary stays binary, text stays text); whichever side
closes, the other is closed -- the member's close code and reason reach the client as the
member sent them (an instance that is not running: the same 4xxx refusal as on its own
member). A member that cannot be reached: accepted, then closed with 4500 and the reason.

Events (``follow_members``): one upstream ``/events`` per other online member, each marked
as forwarded (that member then sends only its own events, tagged with its node); the member
list is read again every ``RESCAN`` seconds, so a member that joins, or comes back, is
followed from then on. Events a member published while it was not followed are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from corral.api.identity import Receive, Send
from corral.domain.errors import CorralError
from corral.services.forwarding import WebSocketTarget

log = logging.getLogger("corral.api.member_ws")

RESCAN = 5.0
"""Seconds between looks at the member list while ``/events`` is followed."""

_NO_STATUS = (1005, 1006)
"""Close codes that say "none was sent" and may not be sent on."""


async def _connect(target: WebSocketTarget) -> Any:
    from websockets.asyncio.client import connect

    return await connect(target.url, additional_headers=target.headers, ssl=target.ssl,
                         max_size=None, open_timeout=10, ping_interval=20)


async def proxy(target: WebSocketTarget, receive: Receive, send: Send) -> None:
    """Serve an ASGI websocket (not yet accepted) as a pipe to ``target``."""
    from websockets.exceptions import ConnectionClosed, WebSocketException

    if (await receive())["type"] != "websocket.connect":
        return
    try:
        upstream = await _connect(target)
    except (OSError, TimeoutError, WebSocketException) as exc:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4500, "reason": (
            f"member '{target.node}' is unreachable: {exc or type(exc).__name__}")[:120]})
        return
    await send({"type": "websocket.accept"})

    async def member_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                key = "bytes" if isinstance(message, bytes) else "text"
                await send({"type": "websocket.send", key: message})
        said: int | None = upstream.close_code
        code = 1011 if said is None or said in _NO_STATUS else said
        reason = str(upstream.close_reason or "") if code != 1011 else \
            f"the connection to member '{target.node}' broke off"
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    async def client_to_member() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            text = message.get("text")
            with contextlib.suppress(ConnectionClosed):
                if data is not None:
                    await upstream.send(data)
                elif text is not None:
                    await upstream.send(text)

    tasks = [asyncio.create_task(member_to_client()), asyncio.create_task(client_to_member())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await upstream.close()


async def follow_members(targets: Callable[[], list[WebSocketTarget]],
                         put: Callable[[str], None]) -> None:
    """Forever (until cancelled): ``put`` each event (its JSON text) of every member
    ``targets`` names (read again every ``RESCAN`` seconds)."""
    followed: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            try:
                found = await asyncio.to_thread(targets)
            except CorralError as exc:  # the store is away: keep what is followed
                log.debug("events: member list unavailable: %s", exc.message)
                found = []
            for target in found:
                running = followed.get(target.node)
                if running is None or running.done():
                    followed[target.node] = asyncio.create_task(_follow(target, put))
            await asyncio.sleep(RESCAN)
    finally:
        for task in followed.values():
            task.cancel()


async def _follow(target: WebSocketTarget, put: Callable[[str], None]) -> None:
    from websockets.exceptions import WebSocketException

    try:
        upstream = await _connect(target)
    except (OSError, TimeoutError, WebSocketException) as exc:
        log.debug("events of member %s: %s", target.node, exc)
        return
    try:
        async for message in upstream:
            put(message if isinstance(message, str) else message.decode())
    except WebSocketException as exc:
        log.debug("events of member %s ended: %s", target.node, exc)
    finally:
        with contextlib.suppress(Exception):
            await upstream.close()
