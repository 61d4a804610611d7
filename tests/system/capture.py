"""Append every frame an interface sees to a file until SIGTERM (or SECONDS pass). Run
inside a network namespace:

    ip netns exec NS python3 capture.py IFNAME OUTFILE SECONDS

Used to check that migration streams carry no plaintext of the guest's data.
"""

from __future__ import annotations

import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003


def main() -> None:
    ifname, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    with open(out, "wb") as sink:
        while not stop and time.monotonic() < deadline:
            try:
                sink.write(sock.recv(65536))
            except TimeoutError:
                continue


if __name__ == "__main__":
    main()
