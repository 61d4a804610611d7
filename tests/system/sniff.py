"""Print, as JSON lines, the frames an interface receives for a while: source MAC, ethertype,
IPv4 source (ARP's sender address for ARP). Run inside a network namespace:

    ip netns exec NS python3 sniff.py IFNAME SECONDS
"""

from __future__ import annotations

import json
import socket
import sys
import time

ETH_P_ALL = 0x0003


def main() -> None:
    ifname, seconds = sys.argv[1], float(sys.argv[2])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            break
        mac = frame[6:12].hex(":")
        kind = int.from_bytes(frame[12:14], "big")
        source = None
        if kind == 0x0800 and len(frame) >= 34:
            source = socket.inet_ntoa(frame[26:30])
        elif kind == 0x0806 and len(frame) >= 42:
            source = socket.inet_ntoa(frame[28:32])
        print(json.dumps({"mac": mac, "type": kind, "ip": source}), flush=True)


if __name__ == "__main__":
    main()
