"""Traffic control: replacing a device's HTB tree and its ingress redirect to an IFB."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from corral.host.net import NetHost
from corral.host.run import require_tool


def _tc() -> str:
    return require_tool("tc", "iproute2")


def clear_root(host: NetHost, device: str) -> None:
    host.run([_tc(), "qdisc", "del", "dev", device, "root"], check=False)


def clear_ingress(host: NetHost, device: str) -> None:
    host.run([_tc(), "qdisc", "del", "dev", device, "ingress"], check=False)


def clear_clsact(host: NetHost, device: str) -> None:
    host.run([_tc(), "qdisc", "del", "dev", device, "clsact"], check=False)


def batch(host: NetHost, commands: Sequence[str]) -> None:
    """Run ``commands`` (``tc -batch`` lines) in one process."""
    if commands:
        host.run([_tc(), "-batch", "-"], input=("\n".join(commands) + "\n").encode())


def replace_tree(host: NetHost, device: str, commands: Sequence[str]) -> None:
    """Delete ``device``'s root qdisc and build the tree ``commands`` describe, in one batch."""
    clear_root(host, device)
    batch(host, commands)


def redirect_ingress(host: NetHost, device: str, ifb: str) -> None:
    """Everything arriving on ``device`` goes through ``ifb``'s egress (where it is shaped)."""
    if any(q.get("kind") == "ingress" for q in qdiscs(host, device)):
        return
    host.run([_tc(), "qdisc", "add", "dev", device, "handle", "ffff:", "ingress"])
    host.run([_tc(), "filter", "add", "dev", device, "parent", "ffff:", "protocol", "all",
              "prio", "1", "u32", "match", "u32", "0", "0",
              "action", "mirred", "egress", "redirect", "dev", ifb])


def qdiscs(host: NetHost, device: str | None = None) -> list[dict[str, Any]]:
    """The qdiscs of ``device``, or of every device (each entry names its ``dev``)."""
    where = ["dev", device] if device is not None else []
    text = host.run([_tc(), "-j", "qdisc", "show", *where], check=False)
    found: list[dict[str, Any]] = json.loads(text) if text.strip() else []
    return found


_CLASS = re.compile(r"^class htb (\S+) .*?rate (\S+) ceil (\S+)")
_UNITS = {"bit": 1, "kbit": 1000, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


def _bits(text: str) -> int:
    match = re.match(r"^([\d.]+)([a-zA-Z]*)$", text)
    if not match:
        return 0
    return int(float(match.group(1)) * _UNITS.get(match.group(2).lower(), 1))


def classes(host: NetHost, device: str) -> dict[str, tuple[int, int]]:
    """HTB classes of ``device``: handle -> (rate, ceil) in bits/s (this tc has no JSON)."""
    text = host.run([_tc(), "class", "show", "dev", device], check=False)
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        match = _CLASS.match(line.strip())
        if match:
            found[match.group(1)] = (_bits(match.group(2)), _bits(match.group(3)))
    return found
