"""Network features of the running kernel, found by trying in a throwaway namespace.

``unshare --net`` gives a private, anonymous namespace that disappears with the probe process,
so a probe can never leave a device (or a named namespace) behind.
"""

from __future__ import annotations

import shutil
from functools import cache

from corral.host.features import Feature
from corral.host.run import run

_PROBES = {
    "vlan_8021q": (
        "802.1Q VLAN (kernel 8021q)",
        "ip link add p0 type veth peer name p1 && ip link add link p0 name p0.5 type vlan id 5",
    ),
    "bridge_vlan_filtering": (
        "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
        "ip link add b0 type bridge vlan_filtering 1",
    ),
    "ifb": ("IFB devices (ingress shaping)", "ip link add i0 type ifb"),
    "veth": ("veth pairs", "ip link add p0 type veth peer name p1"),
    "tap": ("tap devices", "ip tuntap add dev t0 mode tap"),
    # Reported only: VM NICs always use vhost=off (vhost=on aborts QEMU where it is missing).
    "vhost_net": ("vhost-net (/dev/vhost-net; VM NICs use vhost=off)", "test -c /dev/vhost-net"),
    "htb": (
        "tc HTB qdisc",
        "ip link add p0 type veth peer name p1 && tc qdisc add dev p0 root handle 1: htb",
    ),
    "port_redirect": (
        "tc clsact + mirred to an IFB (bandwidth limits at each instance's port)",
        "ip link add p0 type veth peer name p1 && ip link add i0 type ifb && "
        "tc qdisc add dev p0 clsact && tc filter add dev p0 egress protocol all prio 1 u32 "
        "match u32 0 0 action mirred egress redirect dev i0",
    ),
    "nft_bridge": (
        "nftables bridge family",
        "nft add table bridge probe && nft add chain bridge probe c "
        "'{ type filter hook prerouting priority -300; }'",
    ),
}


def _try(script: str) -> tuple[bool, str]:
    if shutil.which("unshare") is None:
        return False, "unshare (util-linux) not installed: cannot probe"
    proc = run(["unshare", "--net", "sh", "-c", script], check=False, timeout=20)
    said = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    return proc.returncode == 0, (said[-1] if said else "")


@cache
def probe(name: str) -> Feature:
    what, script = _PROBES[name]
    ok, said = _try(script)
    if ok:
        return Feature(True, f"{what}: works")
    return Feature(False, f"{what}: not supported by this kernel ({said or 'refused'})")


def probe_network() -> dict[str, Feature]:
    return {name: probe(name) for name in _PROBES}
