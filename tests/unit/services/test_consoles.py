"""The shared console (services/consoles.py): one runtime stream, N viewers, a replayed
backlog, a lingering stream after the last viewer; and the one-use console tickets
(services/tickets.py). The runtime console is a real byte stream: one end of a socket pair
plays the guest."""

from __future__ import annotations

import queue
import socket
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from corral.domain.errors import Forbidden, InvalidInput, NotFound
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.domain.users import Caller, Role
from corral.services.consoles import ConsoleHub
from corral.services.tickets import TicketService
from corral.state.store import InstanceRecord

WAIT = 10.0  # a bound for a thread to hand bytes over, never a speed assertion


class SocketStream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, size: int) -> bytes:
        return self.sock.recv(size)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class Guest:
    """The guest's end, and how many times the runtime console was opened."""

    def __init__(self) -> None:
        self.opened: list[SocketStream] = []
        self.ends: list[socket.socket] = []

    def open(self) -> SocketStream:
        ours, theirs = socket.socketpair()
        theirs.settimeout(WAIT)
        self.ends.append(theirs)
        stream = SocketStream(ours)
        self.opened.append(stream)
        return stream

    def says(self, data: bytes) -> None:
        self.ends[-1].sendall(data)

    def heard(self, size: int) -> bytes:
        got = b""
        while len(got) < size:
            got += self.ends[-1].recv(size - len(got))
        return got


def collector() -> tuple[queue.Queue[bytes], Callable[[bytes], None]]:
    got: queue.Queue[bytes] = queue.Queue()
    return got, got.put


def read_until(got: queue.Queue[bytes], text: bytes) -> bytes:
    seen = b""
    while text not in seen:
        seen += got.get(timeout=WAIT)
    return seen


@pytest.fixture
def hub() -> Iterator[ConsoleHub]:
    made = ConsoleHub(linger=60.0)
    yield made
    made.close()


def test_two_viewers_share_one_runtime_console(hub: ConsoleHub) -> None:
    guest = Guest()
    first, deliver_first = collector()
    second, deliver_second = collector()
    a = hub.attach(7, guest.open, deliver_first)
    b = hub.attach(7, guest.open, deliver_second)
    assert len(guest.opened) == 1 and hub.viewers(7) == 2
    guest.says(b"login: ")
    assert read_until(first, b"login: ") == b"login: "
    assert read_until(second, b"login: ") == b"login: "
    a.write(b"root\n")
    b.write(b"uname\n")
    assert guest.heard(11) == b"root\nuname\n"
    a.close()
    assert hub.viewers(7) == 1


def test_a_later_viewer_sees_the_recent_output_first(hub: ConsoleHub) -> None:
    guest = Guest()
    early, deliver_early = collector()
    viewer = hub.attach(3, guest.open, deliver_early)
    guest.says(b"Linux box 6.1\n# ")
    read_until(early, b"# ")
    viewer.close()  # the page reloads: the console lingers
    again, deliver_again = collector()
    hub.attach(3, guest.open, deliver_again)
    assert read_until(again, b"# ") == b"Linux box 6.1\n# "
    assert len(guest.opened) == 1
    quiet, deliver_quiet = collector()
    hub.attach(3, guest.open, deliver_quiet, replay=False)
    guest.says(b"new\n")
    assert read_until(quiet, b"new\n") == b"new\n"


def test_a_closed_console_ends_every_viewer_and_the_next_opens_anew(hub: ConsoleHub) -> None:
    guest = Guest()
    got, deliver = collector()
    hub.attach(5, guest.open, deliver)
    guest.ends[-1].close()  # the instance stopped
    assert got.get(timeout=WAIT) == b""  # the end, told to the viewer
    assert guest.opened[0].closed
    _later, deliver_later = collector()
    hub.attach(5, guest.open, deliver_later)
    assert len(guest.opened) == 2


def test_the_stream_closes_once_nobody_watched_for_the_linger_time() -> None:
    hub = ConsoleHub(linger=0.0)
    guest = Guest()
    _got, deliver = collector()
    hub.attach(9, guest.open, deliver).close()
    guest.ends[-1].settimeout(WAIT)
    assert guest.ends[-1].recv(1) == b""  # our end was closed by the hub
    assert guest.opened[0].closed and hub.viewers(9) == 0
    hub.close()


def test_an_open_failure_is_the_callers_error(hub: ConsoleHub) -> None:
    def refuse() -> SocketStream:
        raise NotFound("no instance 'x'")

    with pytest.raises(NotFound):
        hub.attach(1, refuse, lambda _data: None)
    assert hub.viewers(1) == 0


# Tickets ---------------------------------------------------------------------------------
def record(name: str, owner: str | None = None) -> InstanceRecord:
    return InstanceRecord(11, name, Kind.VM, "tiny", State.RUNNING, Resources(), False, "n",
                          datetime(2026, 12, 6), owner=owner)


def find(ref: str) -> InstanceRecord:
    if ref != "web":
        raise NotFound(f"no instance '{ref}'")
    return record("web")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_one_console_once() -> None:
    tickets = TicketService(ttl=30.0, clock=Clock())
    olga = Caller("olga", Role.OPERATOR)
    token = tickets.issue(olga, "serial", "web", find)
    granted = tickets.redeem(token, "serial")
    assert (granted.caller, granted.instance, granted.kind) == (olga, "web", "serial")
    with pytest.raises(Forbidden, match="unknown, used or expired"):
        tickets.redeem(token, "serial")


def test_a_ticket_expires_and_opens_only_its_kind() -> None:
    clock = Clock()
    tickets = TicketService(ttl=30.0, clock=clock)
    admin = Caller("carol", Role.ADMIN)
    late = tickets.issue(admin, "vnc", "web", find)
    clock.now += 30.0
    with pytest.raises(Forbidden, match="expired"):
        tickets.redeem(late, "vnc")
    other = tickets.issue(admin, "vnc", "web", find)
    with pytest.raises(Forbidden, match="opens a vnc console, not serial"):
        tickets.redeem(other, "serial")


def test_tickets_are_issued_through_the_policy() -> None:
    tickets = TicketService()
    with pytest.raises(Forbidden, match=r"alice.*may not open consoles"):
        tickets.issue(Caller("alice", Role.OWNER), "serial", "web", find)
    with pytest.raises(NotFound, match="no instance 'nope'"):
        tickets.issue(Caller("carol", Role.ADMIN), "serial", "nope", find)
    with pytest.raises(InvalidInput, match="serial or vnc"):
        tickets.issue(Caller("carol", Role.ADMIN), "rdp", "web", find)
