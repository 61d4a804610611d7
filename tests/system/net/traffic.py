"""A tiny TCP traffic tool run inside test namespaces: `serve PORT` and `send ADDR PORT BYTES`.

`serve` accepts one connection, reads to EOF and prints JSON {bytes, seconds}; `send` writes
exactly BYTES bytes (or for SECONDS when BYTES is 's<seconds>') and prints what it sent.
"""

from __future__ import annotations

import json
import socket
import sys
import time

CHUNK = 64 * 1024


def serve(port: int, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1)
        print("ready", flush=True)
        conn, _ = listener.accept()
        total = 0
        first = last = 0.0
        with conn:
            while True:
                data = conn.recv(CHUNK)
                if not data:
                    break
                now = time.monotonic()
                if not total:
                    first = now
                total += len(data)
                last = now
    print(json.dumps({"bytes": total, "seconds": last - first}), flush=True)


def send(addr: str, port: int, amount: str) -> None:
    payload = b"\0" * CHUNK
    sent = 0
    with socket.create_connection((addr, port), timeout=30) as conn:
        start = time.monotonic()
        if amount.startswith("s"):
            deadline = start + float(amount[1:])
            while time.monotonic() < deadline:
                conn.sendall(payload)
                sent += len(payload)
        else:
            left = int(amount)
            while left > 0:
                chunk = payload[: min(left, CHUNK)]
                conn.sendall(chunk)
                sent += len(chunk)
                left -= len(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        seconds = time.monotonic() - start
    print(json.dumps({"bytes": sent, "seconds": seconds}), flush=True)


def ping(addr: str, count: int, timeout: float) -> int:
    """ICMP echo (v4 or v6) over a raw socket: 0 if any reply came back, else 1."""
    import os
    import select
    import struct

    v6 = ":" in addr
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET,
                                                                         socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        for seq in range(count):
            kind = 128 if v6 else 8
            body = struct.pack("!d", time.time())
            header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
            if not v6:  # the kernel fills in the ICMPv6 checksum itself
                data = header + body
                total = sum(struct.unpack(f"!{len(data) // 2}H", data))
                total = (total >> 16) + (total & 0xFFFF)
                checksum = ~(total + (total >> 16)) & 0xFFFF
                header = struct.pack("!BBHHH", kind, 0, checksum, ident, seq)
            sock.sendto(header + body, (addr, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                packet = sock.recv(2048)
                icmp = packet if v6 else packet[(packet[0] & 0x0F) * 4:]
                reply = 129 if v6 else 0
                if icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident:
                    return 0
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "ping":
        sys.exit(ping(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0")
    else:
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4])
