"""`corral network …`, `corral nic …`, `corral netstat`, `corral bandwidth …`."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client
from corral.cli.output import Format
from corral.wire.models import (
    AddNicRequest,
    CreateNetworkRequest,
    SetBandwidthRequest,
)

network_app = typer.Typer(help="Networks shared by containers and VMs", no_args_is_help=True)
class_app = typer.Typer(help="Traffic classes: named IP ranges, counted and shaped",
                        no_args_is_help=True)
nic_app = typer.Typer(help="NICs of an instance", no_args_is_help=True)
bandwidth_app = typer.Typer(help="Guaranteed and maximum bandwidth per traffic class",
                            no_args_is_help=True)
network_app.add_typer(class_app, name="class")
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


def _rate(bits: int) -> str:
    from corral.domain.network import format_rate

    return format_rate(bits)


@network_app.command("create")
def network_create(
    name: str,
    type_: Annotated[str, typer.Option("--type", "-t",
                                       help="bridged, routed, vlan or nat")] = "bridged",
    subnet: Annotated[list[str] | None, typer.Option(help="IPv4/IPv6 subnet (repeat)")] = None,
    gateway: Annotated[list[str] | None, typer.Option(help="gateway address (repeat)")] = None,
    uplink: Annotated[str | None, typer.Option(help="host interface to attach")] = None,
    vlan: Annotated[int | None, typer.Option(help="802.1Q id (type vlan)")] = None,
    link_rate: Annotated[str | None, typer.Option(help="shared link speed, e.g. 1gbit")] = None,
    pool: Annotated[list[str] | None, typer.Option(help="allocation range FIRST-LAST")] = None,
) -> None:
    """Create a network."""
    request = CreateNetworkRequest(name=name, type=type_, subnets=subnet or [],
                                   gateways=gateway or [], uplink=uplink, vlan=vlan,
                                   link_rate=link_rate, pools=pool or [])
    with client() as c:
        net = c.create_network(request)
    output.console.print(f"Network [bold]{net.name}[/] ({net.type}) created")


@network_app.command("list")
def network_list(fmt: FormatOpt = Format.table) -> None:
    """All networks."""
    with client() as c:
        items = c.list_networks()
    if not output.emit_structured(items, fmt):
        output.table(["NAME", "TYPE", "SUBNETS", "UPLINK", "BRIDGE", "LINK", "NICS"], [
            [n.name, n.type, ", ".join(n.subnets) or "-", n.uplink or "-", n.bridge or "-",
             _rate(n.link_rate), str(n.nics)] for n in items])


@network_app.command("info")
def network_info(name: str, fmt: FormatOpt = Format.table) -> None:
    """One network."""
    with client() as c:
        n = c.get_network(name)
    if not output.emit_structured(n, fmt):
        output.key_values([
            ("name", n.name), ("id", str(n.id)), ("type", n.type),
            ("subnets", ", ".join(n.subnets) or "-"), ("gateways", ", ".join(n.gateways) or "-"),
            ("uplink", n.uplink or "-"), ("vlan", str(n.vlan or "-")),
            ("bridge", n.bridge or "-"), ("link rate", _rate(n.link_rate)),
            ("nics", str(n.nics)),
        ])


@network_app.command("delete")
def network_delete(names: list[str]) -> None:
    """Delete networks (they must have no NICs)."""
    with client() as c:
        for name in names:
            c.delete_network(name)
            output.console.print(f"Network [bold]{name}[/] deleted")


@class_app.command("set")
def class_set(definition: Annotated[str, typer.Argument(help="NAME=RANGE[,RANGE…]")]) -> None:
    """Define or change a traffic class, e.g. local=10.0.0.0/8,fd00::/8."""
    name, _, ranges = definition.partition("=")
    with client() as c:
        cls = c.set_traffic_class(name, [r for r in ranges.split(",") if r])
    output.console.print(f"Class [bold]{cls.name}[/] = {', '.join(cls.ranges)}")


@class_app.command("list")
def class_list(fmt: FormatOpt = Format.table) -> None:
    """Traffic classes (the most specific range wins where they overlap)."""
    with client() as c:
        items = c.list_traffic_classes()
    if not output.emit_structured(items, fmt):
        output.table(["CLASS", "RANGES"], [[t.name, ", ".join(t.ranges)] for t in items])


@class_app.command("delete")
def class_delete(name: str) -> None:
    """Delete a traffic class."""
    with client() as c:
        c.delete_traffic_class(name)
    output.console.print(f"Class [bold]{name}[/] deleted")


@nic_app.command("add")
def nic_add(
    instance: str,
    network: Annotated[str, typer.Option("--network", "-n")],
    ip: Annotated[list[str] | None, typer.Option(
        help="address, or auto4/auto6 (repeat); default: one per IP version")] = None,
    mac: Annotated[str | None, typer.Option()] = None,
    no_antispoof: Annotated[bool, typer.Option("--no-antispoof")] = False,
) -> None:
    """Give an instance a NIC (hot-added if it is running)."""
    with client() as c:
        nic = c.add_nic(instance, AddNicRequest(network=network, ips=ip or [], mac=mac,
                                                antispoof=not no_antispoof))
    output.console.print(
        f"{nic.guest_device} of [bold]{instance}[/] on {nic.network}: {nic.mac} "
        f"{' '.join(nic.addresses)}"
    )


@nic_app.command("remove")
def nic_remove(instance: str, index: int) -> None:
    """Remove NIC INDEX (ethINDEX) from an instance."""
    with client() as c:
        c.remove_nic(instance, index)


@nic_app.command("list")
def nic_list(instance: Annotated[str | None, typer.Argument()] = None,
             fmt: FormatOpt = Format.table) -> None:
    """NICs of one instance, or of all."""
    with client() as c:
        items = c.list_nics(instance)
    if not output.emit_structured(items, fmt):
        output.table(["INSTANCE", "NIC", "NETWORK", "MAC", "ADDRESSES", "HOST DEVICE", "GUARD"], [
            [n.instance, n.guest_device, n.network, n.mac, " ".join(n.addresses),
             n.host_device, "on" if n.antispoof else "off"] for n in items])


@bandwidth_app.command("set")
def bandwidth_set(
    instance: str,
    traffic_class: Annotated[str, typer.Option("--class", "-c")],
    rate: Annotated[str, typer.Option(help="guarantee, e.g. 10mbit")],
    ceil: Annotated[str | None, typer.Option(help="maximum (default: the guarantee)")] = None,
    direction: Annotated[str, typer.Option(help="in, out or both")] = "both",
) -> None:
    """Set (or change live) an instance's bandwidth for one traffic class."""
    with client() as c:
        c.set_bandwidth(instance, SetBandwidthRequest(
            traffic_class=traffic_class, direction=direction, rate=rate, ceil=ceil))
    where = "" if direction == "both" else f" ({direction})"
    output.console.print(f"Bandwidth for [bold]{instance}[/] class {traffic_class}{where}: "
                         f"rate {rate}, ceil {ceil or rate}")


@bandwidth_app.command("clear")
def bandwidth_clear(instance: str,
                    traffic_class: Annotated[str | None, typer.Option("--class", "-c")] = None
                    ) -> None:
    """Remove an instance's bandwidth rules (of one class, or all)."""
    with client() as c:
        c.clear_bandwidth(instance, traffic_class)


@bandwidth_app.command("list")
def bandwidth_list(instance: Annotated[str | None, typer.Argument()] = None,
                   fmt: FormatOpt = Format.table) -> None:
    """Bandwidth rules."""
    with client() as c:
        items = c.list_bandwidth(instance)
    if not output.emit_structured(items, fmt):
        output.table(["INSTANCE", "CLASS", "DIRECTION", "GUARANTEE", "MAXIMUM"], [
            [b.instance, b.traffic_class, b.direction, _rate(b.rate), _rate(b.ceil)]
            for b in items])


def netstat(instance: Annotated[str | None, typer.Argument()] = None,
            fmt: FormatOpt = Format.table) -> None:
    """Traffic per instance, traffic class and direction (bytes and packets)."""
    with client() as c:
        items = c.traffic(instance)
    if not output.emit_structured(items, fmt):
        output.table(["INSTANCE", "CLASS", "DIRECTION", "BYTES", "PACKETS"], [
            [t.instance, t.traffic_class, t.direction, str(t.bytes), str(t.packets)]
            for t in items])
