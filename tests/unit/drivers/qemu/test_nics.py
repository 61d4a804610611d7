from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.network import NetworkSpec, NetworkType, NicSpec
from corral.drivers.qemu.cmdline import VmConfig, VmNic, VmPaths, build_argv, nic_argv
from corral.drivers.qemu.nics import append_nics, guest_spec, kernel_words

LAN = NetworkSpec(1, "lan", NetworkType.BRIDGED,
                  (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")),
                  (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1")))
ROUTED = NetworkSpec(2, "rt", NetworkType.ROUTED)


def nic(index: int, network: NetworkSpec, *addresses: str) -> NicSpec:
    return NicSpec(7, index, network, f"02:c0:00:00:00:0{index}",
                   tuple(ipaddress.ip_address(a) for a in addresses))


def test_microvm_nics_are_taps_without_vhost_on_virtio_mmio() -> None:
    argv = nic_argv("microvm", (VmNic(1, "c7n1", "02:c0:00:00:00:01"),
                                VmNic(0, "c7n0", "02:c0:00:00:00:00")))
    assert argv == [
        "-netdev", "tap,id=net0,ifname=c7n0,script=no,downscript=no,vhost=off",
        "-device", "virtio-net-device,netdev=net0,mac=02:c0:00:00:00:00,id=nic0",
        "-netdev", "tap,id=net1,ifname=c7n1,script=no,downscript=no,vhost=off",
        "-device", "virtio-net-device,netdev=net1,mac=02:c0:00:00:00:01,id=nic1",
    ]
    assert not any("vhost=on" in word for word in argv)


def test_q35_has_a_root_port_per_possible_nic_and_puts_each_nic_on_its_own() -> None:
    argv = nic_argv("q35", (VmNic(3, "c7n3", "02:c0:00:00:00:03"),))
    ports = [w for w in argv if w.startswith("pcie-root-port")]
    assert len(ports) == 16 and ports[0] == "pcie-root-port,id=rp0,bus=pcie.0,chassis=1"
    assert "virtio-net-pci,netdev=net3,mac=02:c0:00:00:00:03,id=nic3,bus=rp3" in argv


def test_pc_hot_plugs_on_the_root_bus() -> None:
    assert nic_argv("pc", (VmNic(0, "c7n0", "02:c0:00:00:00:00"),))[-1] == (
        "virtio-net-pci,netdev=net0,mac=02:c0:00:00:00:00,id=nic0")


def test_build_argv_without_nics_has_no_network_device(tmp_path: Path) -> None:
    cfg = VmConfig("v", 1, 256 * 1024**2, "tcg", Path("/k"), None, "x", tmp_path / "r.img",
                   VmPaths(tmp_path, tmp_path / "run"))
    assert "-netdev" not in build_argv("qemu", cfg)


def test_guest_spec_gives_the_first_nic_the_gateways() -> None:
    assert guest_spec(nic(0, LAN, "10.0.0.5", "fd00::100")) == (
        "02:c0:00:00:00:00,10.0.0.5/24,fd00::100/64,gw=10.0.0.1,gw=fd00::1")
    assert guest_spec(nic(1, LAN, "10.0.0.6")) == "02:c0:00:00:00:01,10.0.0.6/24"


def test_guest_spec_of_a_routed_nic_routes_by_device_per_family() -> None:
    assert guest_spec(nic(1, ROUTED, "192.0.2.10")) == "02:c0:00:00:00:01,192.0.2.10/32,dev4"
    assert guest_spec(nic(0, ROUTED, "192.0.2.10", "2001:db8::10")) == (
        "02:c0:00:00:00:00,192.0.2.10/32,2001:db8::10/128,dev4,dev6")


def test_kernel_words_in_index_order_and_appended() -> None:
    nics = [nic(1, ROUTED, "192.0.2.10"), nic(0, LAN, "10.0.0.5")]
    assert [w.split("=")[0] for w in kernel_words(nics)] == ["corral.net0", "corral.net1"]
    assert append_nics("console=ttyS0", nics).startswith("console=ttyS0 corral.net0=")
    assert append_nics("console=ttyS0", []) == "console=ttyS0"


def test_a_kernel_command_line_the_kernel_would_truncate_is_refused() -> None:
    many = [nic(i, LAN, *[f"fd00::{i:x}:{k:x}" for k in range(8)]) for i in range(16)]
    with pytest.raises(InvalidInput, match="kernel command line"):
        append_nics("console=ttyS0", many)
