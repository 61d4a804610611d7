"""One-use tickets for the browser's console websockets.

A browser cannot put a bearer token on a websocket, and a cookie alone would let any page
of the same site open a console once it can make the browser connect. The console page asks
for a ticket with a CSRF-checked POST; the ticket names the caller, the instance and the
kind of console, is good for ``TTL`` seconds and for one websocket. Issuing asks the same
policy as the API's console routes (``services/access.py``: the ``console`` and ``vnc``
actions, and consoles only for those who may open them), so a ticket never grants more than
the API would.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.domain.errors import Forbidden, InvalidInput
from corral.domain.users import Caller
from corral.services.access import Access
from corral.state.store import InstanceRecord

TTL = 30.0
KINDS = {"serial": "console", "vnc": "vnc"}
"""Console kind -> the API action (route name) that opens it."""


@dataclass(frozen=True)
class Ticket:
    caller: Caller
    instance: str
    kind: str
    expires: float


class TicketService:
    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: dict[str, Ticket] = {}

    def issue(self, caller: Caller, kind: str, ref: str,
              find: Callable[[str], InstanceRecord]) -> str:
        """A ticket for ``caller`` to open ``kind`` (serial or vnc) of instance ``ref``."""
        if kind not in KINDS:
            raise InvalidInput(f"no console kind '{kind}' (serial or vnc)")
        policy = Access(caller)
        policy.websocket("open consoles")
        policy.require(KINDS[kind])
        record = policy.find_instance(find, ref)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
            self._tickets[token] = Ticket(caller, record.name, kind, now + self.ttl)
        return token

    def redeem(self, token: str, kind: str) -> Ticket:
        """The ticket's grant, once: a second use, an expired or unknown ticket, or one for
        another kind of console is refused."""
        with self._lock:
            ticket = self._tickets.pop(token, None)
        if ticket is None or ticket.expires <= self._clock():
            raise Forbidden("this console ticket is unknown, used or expired: reload the page")
        if ticket.kind != kind:
            raise Forbidden(f"this ticket opens a {ticket.kind} console, not {kind}")
        return ticket
