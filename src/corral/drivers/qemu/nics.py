"""VM NICs: a tap per NIC on the host, virtio-net in the guest, addresses on the kernel
command line, and hot-plug over QMP where the machine has a hot-plug bus.

* At start every NIC of ``nics.json`` gets a tap ``c<id>n<i>`` (made here, through
  ``host/net.py``); a bridged one is put on its bridge before QEMU runs, as LXC does with a
  container's veth; routed NICs are wired up by the network service once the VM runs.
* The guest learns its configuration from ``corral.net<i>=<mac>,<cidr>...,gw=<addr>|dev4|dev6``
  words on the kernel command line; the tiny template's ``/sbin/corral-net`` applies them
  (finds the device by MAC, renames it ``eth<i>``, adds addresses and routes).
* Hot-plug: q35 VMs have one PCIe root port per possible NIC, pc VMs hot-plug on the root
  bus (ACPI); ``netdev_add`` + ``device_add``, then the agent runs ``corral-net``. A microvm
  VM has no hot-plug bus at all (virtio-mmio devices are fixed when the machine is built), so
  hot-add/remove there is refused with a clear error and the NIC comes at the next start.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from corral.domain.errors import Conflict, HostFailure, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec
from corral.domain.network import NetworkType, NicSpec
from corral.drivers.qemu import agent
from corral.drivers.qemu.cmdline import VmNic, VmPaths, root_port
from corral.drivers.qemu.qmp import qmp
from corral.host.net import NetHost
from corral.network.nicfile import read_nics

KERNEL_CMDLINE_MAX = 2047  # x86 COMMAND_LINE_SIZE is 2048 bytes including the NUL
GUEST_NET_TOOL = "/sbin/corral-net"
UNPLUG_TIMEOUT = 15.0
GUEST_CONFIG_TIMEOUT = 20.0
_HOTPLUG_MACHINES = {"q35": "virtio-net-pci", "pc": "virtio-net-pci"}


def guest_spec(nic: NicSpec) -> str:
    """``<mac>,<cidr>...[,gw=<address>|,dev4|,dev6]``: what the guest needs to configure ``nic``.

    Gateways follow the LXC driver: a routed NIC's default route is the device itself (the
    host answers every ARP/ND on it); on other networks the first NIC gets the gateways."""
    words = [nic.mac, *(f"{a}/{nic.prefix_of(a)}" for a in nic.addresses)]
    if nic.network.type is NetworkType.ROUTED:
        words += ["dev4"] * bool(nic.ipv4) + ["dev6"] * bool(nic.ipv6)
    elif nic.index == 0:
        words += [f"gw={g}" for g in nic.network.gateways]
    return ",".join(words)


def kernel_words(nics: list[NicSpec]) -> list[str]:
    return [f"corral.net{n.index}={guest_spec(n)}" for n in sorted(nics, key=lambda n: n.index)]


def append_nics(append: str, nics: list[NicSpec]) -> str:
    """The kernel command line with the NIC words; refused when the kernel would truncate it."""
    text = " ".join([append, *kernel_words(nics)])
    if len(text) > KERNEL_CMDLINE_MAX:
        raise InvalidInput(
            f"the kernel command line with {len(nics)} NICs is {len(text)} bytes, more than "
            f"the {KERNEL_CMDLINE_MAX} the kernel keeps; use fewer NICs or addresses"
        )
    return text


def vm_nics(nics: list[NicSpec]) -> tuple[VmNic, ...]:
    return tuple(VmNic(n.index, n.host_ifname, n.mac) for n in nics)


def instance_nics(spec: InstanceSpec) -> list[NicSpec]:
    return read_nics(spec.directory)


# --- taps -------------------------------------------------------------------------------


def prepare_taps(nics: list[NicSpec], host: NetHost | None = None) -> None:
    """Make each NIC's tap (reusing one left by a crash); bridged ones go on their bridge."""
    h = host or NetHost()
    made: list[str] = []
    try:
        for nic in nics:
            prepare_tap(nic, h)
            made.append(nic.host_ifname)
    except BaseException:
        for name in made:
            h.delete_link(name)
        raise


def prepare_tap(nic: NicSpec, h: NetHost) -> None:
    h.ensure_tap(nic.host_ifname)
    bridge = nic.network.bridge
    if bridge is not None:
        if not h.exists(bridge):
            raise HostFailure(f"bridge '{bridge}' of network '{nic.network.name}' is missing")
        if h.master_of(nic.host_ifname) != bridge:
            h.set_master(nic.host_ifname, bridge)
    h.up(nic.host_ifname)


def remove_taps(nics: list[NicSpec], host: NetHost | None = None) -> None:
    h = host or NetHost()
    for nic in nics:
        h.delete_link(nic.host_ifname)


# --- hot-plug ---------------------------------------------------------------------------


def machine_type(paths: VmPaths) -> str:
    """'microvm', 'q35' or 'pc' of a running VM, asked from QEMU itself."""
    qom = str(qmp(paths.qmp, "qom-get", {"path": "/machine", "property": "type"}))
    for name in ("microvm", "q35"):
        if name in qom:
            return name
    return "pc" if qom.startswith("pc-") else qom


def _require_hotplug(spec: InstanceSpec, paths: VmPaths, action: str) -> str:
    machine = machine_type(paths)
    if machine not in _HOTPLUG_MACHINES:
        raise Unsupported(
            f"cannot {action} a NIC on running VM '{spec.name}': its machine type {machine} "
            "has no hot-plug bus (virtio-mmio devices are fixed when the VM starts); stop it "
            "and the NIC follows at the next start, or use a template with vm.machine q35"
        )
    return machine


def _peripherals(paths: VmPaths) -> set[str]:
    found: list[dict[str, Any]] = qmp(paths.qmp, "qom-list", {"path": "/machine/peripheral"})
    return {item["name"] for item in found}


def hot_add(spec: InstanceSpec, paths: VmPaths, nic: NicSpec) -> None:
    machine = _require_hotplug(spec, paths, "hot-add")
    if qmp(paths.qmp, "query-status").get("status") != "running":
        # a paused guest can neither take the device nor configure it
        raise Conflict(f"VM '{spec.name}' is paused; resume it to hot-add a NIC")
    vm = VmNic(nic.index, nic.host_ifname, nic.mac)
    host = NetHost()
    prepare_tap(nic, host)
    try:
        qmp(paths.qmp, "netdev_add", {
            "type": "tap", "id": vm.netdev_id, "ifname": vm.ifname, "script": "no",
            "downscript": "no", "vhost": False,
        })
        try:
            device: dict[str, Any] = {"driver": _HOTPLUG_MACHINES[machine],
                                      "id": vm.device_id, "netdev": vm.netdev_id, "mac": nic.mac}
            if machine == "q35":
                device["bus"] = root_port(nic.index)
            qmp(paths.qmp, "device_add", device)
            try:
                configure_guest(paths, [nic])
            except BaseException:
                _unplug(paths, vm)
                raise
        except BaseException:
            with contextlib.suppress(HostFailure):
                qmp(paths.qmp, "netdev_del", {"id": vm.netdev_id})
            raise
    except BaseException:
        host.delete_link(nic.host_ifname)
        raise


def configure_guest(paths: VmPaths, nics: list[NicSpec]) -> None:
    """Run the guest's ``corral-net`` through the agent (it waits for the devices itself)."""
    argv = [GUEST_NET_TOOL, *(f"{n.index}={guest_spec(n)}" for n in nics)]
    rid = agent.new_id()
    request = agent.encode_exec(rid, argv, GUEST_CONFIG_TIMEOUT, b"")
    reply = agent.AgentClient(paths.agent, paths.agent_lock).call(
        request, rid, GUEST_CONFIG_TIMEOUT + agent.EXEC_GRACE
    )
    if reply.verb != "RESULT" or reply.exit_code != 0:
        said = (reply.stderr or reply.stdout).decode(errors="replace").strip()
        raise HostFailure(f"the guest could not configure its new NIC: {said or reply.message}")


def hot_remove(spec: InstanceSpec, paths: VmPaths, nic: NicSpec) -> None:
    _require_hotplug(spec, paths, "hot-remove")
    _unplug(paths, VmNic(nic.index, nic.host_ifname, nic.mac))
    with contextlib.suppress(HostFailure):
        qmp(paths.qmp, "netdev_del", {"id": f"net{nic.index}"})
    NetHost().delete_link(nic.host_ifname)


def _unplug(paths: VmPaths, vm: VmNic) -> None:
    """device_del asks the guest to let go; the device is gone once it has (ACPI eject)."""
    if vm.device_id not in _peripherals(paths):
        return
    qmp(paths.qmp, "device_del", {"id": vm.device_id})
    deadline = time.monotonic() + UNPLUG_TIMEOUT
    while time.monotonic() < deadline:
        if vm.device_id not in _peripherals(paths):
            return
        time.sleep(0.1)
    raise HostFailure(
        f"the guest did not release NIC {vm.index} within {UNPLUG_TIMEOUT:.0f} s "
        "(it must handle PCI hot-unplug)"
    )


class QemuNicHotplug:
    """The ``NicHotplug`` hooks of ``QemuDriver`` (its ``Hooks.nics``, drivers/qemu/hooks.py)."""

    def attach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        hot_add(spec, VmPaths(spec.directory, spec.run_dir), nic)

    def detach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        hot_remove(spec, VmPaths(spec.directory, spec.run_dir), nic)
