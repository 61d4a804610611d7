"""`corral console`: an interactive serial console; Ctrl-a q detaches."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from typing import Annotated, Any

import typer

from corral.cli.common import client, fail

CTRL_A = b"\x01"


def _pump_output(ws: Any, stop: threading.Event) -> None:
    try:
        for message in ws:
            data = message if isinstance(message, bytes) else message.encode()
            os.write(sys.stdout.fileno(), data)
    except Exception:
        pass
    stop.set()


def console(
    ref: Annotated[str, typer.Argument()],
    log: Annotated[bool, typer.Option("--log", help="print the kept console log and exit")] = False,
    linger: Annotated[float, typer.Option(help="non-interactive: seconds to wait for output "
                                          "after input ends")] = 2.0,
) -> None:
    """Attach to the serial console (both kinds). Ctrl-a q detaches."""
    with client() as c:
        if log:
            sys.stdout.buffer.write(c.console_log(ref))
            sys.stdout.flush()
            return
        c.get_instance(ref)  # a clear error for an unknown name before switching the terminal
        try:
            ws = c.console(ref)
        except Exception as exc:
            fail(f"cannot attach to the console of '{ref}': {exc}")
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Connected to {ref}'s console. Ctrl-a q detaches.\r", file=sys.stderr)
    stop = threading.Event()
    reader = threading.Thread(target=_pump_output, args=(ws, stop), daemon=True)
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
                if escape and data[:1] in (b"q", b"Q"):
                    break
                escape = data.endswith(CTRL_A)
                if escape:
                    data = data[:-1]
            if data:
                ws.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(Exception):
            ws.close()
    if interactive:
        print("\nDetached.", file=sys.stderr)
