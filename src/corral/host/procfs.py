"""What /proc says about a process, read without starting any: its parent, its liveness and
the addresses of the network namespace it is in.

``list`` of a thousand instances reads these for each running container, so every function
here is a file read or two and never a process (``lxc-info -i`` was one per container).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from corral.domain.names import is_decimal

PROC = Path("/proc")


def parent_of(pid: int, proc: Path = PROC) -> int | None:
    """The parent pid of ``pid``; None when it is gone."""
    return _stat_number(pid, 1, proc)


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``stat``'s field 22); None when it
    is gone. Pids are reused (pid_max wraps): only this orders processes by age."""
    return _stat_number(pid, 19, proc)


def _stat_number(pid: int, index: int, proc: Path) -> int | None:
    """Field ``index`` of ``pid``'s ``stat`` after its command (0: the state), as a number;
    None when the process is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[index]) if len(fields) > index and is_decimal(fields[index]) else None


def parse_fib_trie(text: str) -> list[str]:
    """The local IPv4 addresses of a /proc/<pid>/net/fib_trie, loopback left out."""
    found: list[str] = []
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            last = stripped[4:]
        elif (stripped.startswith("/32 host LOCAL") and last
              and not last.startswith("127.") and last not in found):
            found.append(last)
    return found


def parse_if_inet6(text: str) -> list[str]:
    """The global-scope IPv6 addresses of a /proc/<pid>/net/if_inet6 (scope 00)."""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[3] != "00" or fields[5] == "lo":
            continue
        try:
            address = str(ipaddress.IPv6Address(int(fields[0], 16)))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def netns_addresses(pid: int, proc: Path = PROC) -> list[str]:
    """The addresses (IPv4 local, IPv6 global) of the network namespace ``pid`` is in, as
    ``lxc-info -i`` lists them; empty when the process is gone."""
    net = proc / str(pid) / "net"
    found: list[str] = []
    for name, parse in (("fib_trie", parse_fib_trie), ("if_inet6", parse_if_inet6)):
        try:
            found += parse((net / name).read_text())
        except OSError:
            continue
    return found
