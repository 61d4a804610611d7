"""`corral console`: an interactive serial console; Ctrl-a q detaches."""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import termios
import threading
import tty
from typing import Annotated, Any

import typer

from corral.cli.common import client, fail
from corral.cli.vnc import vnc_hint

CTRL_A = b"\x01"

# ECMA-48 sequences: CSI (ESC [ … final), OSC/DCS/SOS/PM/APC strings (ended by BEL or ESC \\,
# or cut off by the end of the log), and two-byte escapes (ESC, intermediates, final).
_SEQUENCE = re.compile(
    rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    rb"|\x1b[\]PX^_].*?(?:\x07|\x1b\\\\|\Z)"
    rb"|\x1b[\x20-\x2f]*[\x30-\x7e]?",
    re.DOTALL,
)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def plain_text(log: bytes) -> bytes:
    """The console log as text: terminal control sequences and control characters removed,
    CR LF and lone CRs (a line drawn again) made line ends."""
    text = _SEQUENCE.sub(b"", log)
    text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return _CONTROL.sub(b"", text)


def _escape(data: bytes, pending: bool) -> tuple[bytes, bool, bool]:
    """Apply the Ctrl-a escape to typed bytes: (bytes for the guest, Ctrl-a pending, detach).

    Ctrl-a q detaches (also when both arrive in one read), Ctrl-a a sends one Ctrl-a, and a
    Ctrl-a followed by anything else passes both through.
    """
    out = bytearray()
    for byte in data:
        char = bytes([byte])
        if pending:
            pending = False
            if char in (b"q", b"Q"):
                return bytes(out), False, True
            out += CTRL_A if char in (b"a", CTRL_A) else CTRL_A + char
        elif char == CTRL_A:
            pending = True
        else:
            out += char
    return bytes(out), pending, False


def _pump_output(ws: Any, stop: threading.Event, closed: list[str]) -> None:
    try:
        for message in ws:
            data = message if isinstance(message, bytes) else message.encode()
            os.write(sys.stdout.fileno(), data)
    except Exception:
        pass
    code = getattr(ws, "close_code", None)
    if code is not None and code >= 4000:  # the daemon refused or ended the console
        closed.append(getattr(ws, "close_reason", "") or f"closed ({code})")
    stop.set()


def console(
    ref: Annotated[str, typer.Argument()],
    log: Annotated[bool, typer.Option(
        "--log", help="print the kept console log as text (terminal control sequences "
        "removed) and exit")] = False,
    linger: Annotated[float, typer.Option(help="non-interactive: seconds to wait for output "
                                          "after input ends")] = 2.0,
    vnc: Annotated[bool, typer.Option("--vnc", help="VMs from --image/--iso: where their VNC "
                                      "console is (with --vnc-port: proxy it)")] = False,
    vnc_port: Annotated[int | None, typer.Option(
        help="with --vnc: serve it on 127.0.0.1:PORT here (0: any free port)")] = None,
) -> None:
    """Attach to the serial console (both kinds). Ctrl-a q detaches."""
    if vnc:
        vnc_hint(ref, vnc_port)
        return
    with client() as c:
        if log:
            sys.stdout.buffer.write(plain_text(c.console_log(ref)))
            sys.stdout.flush()
            return
        state = c.get_instance(ref).state  # clear errors before switching the terminal
        if state not in ("running", "suspended"):
            fail(f"cannot attach to the console of '{ref}': it is {state}; start it first")
        try:
            ws = c.console(ref)
        except Exception as exc:
            fail(f"cannot attach to the console of '{ref}': {exc}")
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Connected to {ref}'s console. Ctrl-a q detaches.\r", file=sys.stderr)
    stop = threading.Event()
    closed: list[str] = []
    reader = threading.Thread(target=_pump_output, args=(ws, stop, closed), daemon=True)
    reader.start()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if interactive else None
    try:
        if interactive:
            tty.setraw(fd)
        escape = False
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 1024)
            if not data:
                stop.wait(linger)
                break
            if interactive:
                data, escape, detach = _escape(data, escape)
                if data:
                    ws.send(data)
                if detach:
                    break
                continue
            if data:
                ws.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(Exception):
            ws.close()
    reader.join(1)
    if closed:
        fail(f"console of '{ref}': {closed[0]}")
    if interactive:
        print("\nDetached.", file=sys.stderr)
