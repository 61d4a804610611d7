"""`corral cluster init|join|leave|status|members`; `corral host cordon|uncordon`,
`corral host evacuate|restore`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from corral.cli import bulk, output
from corral.cli.common import client, fail, follow
from corral.cli.output import Format
from corral.client import cluster as api
from corral.client.client import CorralClient
from corral.domain.bulk import DEFAULT_PARALLEL, MAX_PARALLEL
from corral.wire.cluster import (
    ClusterInitRequest,
    ClusterJoinRequest,
    ClusterStatus,
    EvacuateRequest,
    RestoreRequest,
)
from corral.wire.models import OperationModel

cluster_app = typer.Typer(help="Many hosts as one (shared state in etcd)", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f")]


def _show(s: ClusterStatus) -> None:
    if not s.clustered:
        output.key_values([("node", s.node), ("cluster", "none (a single host)")])
        return
    output.key_values([
        ("node", s.node), ("etcd", ", ".join(s.endpoints)),
        ("local etcd member", "yes" if s.local_etcd else "no"),
        ("etcd TLS", ("yes, with a client certificate" if s.client_cert else "yes")
         if s.tls else "no"),
        ("members", f"{s.members} ({s.online} online)"), ("leader", s.leader or "-"),
        ("offline after", f"{s.offline_after} s"),
        *((f"etcd {url}", health) for url, health in s.etcd.items()),
        *((("error", s.error),) if s.error else ()),
    ])
    for warning in s.warnings:
        output.warn(warning)


def _read_pem(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the {what} {path}: {exc}", code=2)


@cluster_app.command("init")
def cluster_init(
    etcd: Annotated[str | None, typer.Option(
        help="endpoints of an existing etcd, comma-separated (https://HOST:2379,...); "
             "default: start a local etcd member on this host")] = None,
    etcd_listen: Annotated[str | None, typer.Option(
        help="the local member's client address HOST:PORT (default 127.0.0.1:12379, "
             "beside a stock etcd on 2379; other hosts must reach it to join)")] = None,
    etcd_peer_listen: Annotated[str | None, typer.Option(
        help="the local member's peer address HOST:PORT (default 127.0.0.1:12380)")] = None,
    offline_after: Annotated[int, typer.Option(
        help="seconds without a heartbeat after which a member shows offline")] = 10,
    etcd_ca: Annotated[Path | None, typer.Option(
        help="with --etcd https://…: the CA certificate (PEM) of that etcd")] = None,
    etcd_cert: Annotated[Path | None, typer.Option(
        help="with --etcd https://…: a client certificate (PEM) for etcd's "
             "--client-cert-auth")] = None,
    etcd_key: Annotated[Path | None, typer.Option(
        help="with --etcd https://…: that client certificate's key (PEM, unencrypted)")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Make this host the first member of a cluster.

    Without --etcd, a local etcd member serves clients and peers over TLS with client
    certificates under a CA this host makes; joining hosts get a client certificate."""
    endpoints = [e.strip() for e in (etcd or "").split(",") if e.strip()]
    request = ClusterInitRequest(
        etcd=endpoints, etcd_listen=etcd_listen, etcd_peer_listen=etcd_peer_listen,
        offline_after=offline_after, etcd_ca=_read_pem(etcd_ca, "etcd CA"),
        etcd_cert=_read_pem(etcd_cert, "etcd client certificate"),
        etcd_key=_read_pem(etcd_key, "etcd client key"))
    with client() as c:
        s = api.init(c, request)
    if not output.emit_structured(s, fmt):
        output.console.print(f"Cluster made; [bold]{s.node}[/] is its first member")
        _show(s)


@cluster_app.command("join")
def cluster_join(
    url: Annotated[str, typer.Argument(help="a member's API: https://HOST:PORT")],
    token: Annotated[str, typer.Option(help="that member's API token")],
    fingerprint: Annotated[str | None, typer.Option(
        help="its expected sha256 certificate fingerprint (`corral host pairing` there); "
             "default: trust on first use")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Join the cluster of the member at URL."""
    with client() as c:
        s = api.join(c, ClusterJoinRequest(url=url, token=token, fingerprint=fingerprint))
    if not output.emit_structured(s, fmt):
        output.console.print(f"[bold]{s.node}[/] joined the cluster")
        _show(s)


@cluster_app.command("leave")
def cluster_leave() -> None:
    """Leave the cluster; this host's instances stay here (a single host again)."""
    with client() as c:
        api.leave(c)
    output.console.print("Left the cluster")


@cluster_app.command("status")
def cluster_status(fmt: FormatOpt = Format.table) -> None:
    """This host's membership and the cluster store's health."""
    with client() as c:
        s = api.status(c)
    if not output.emit_structured(s, fmt):
        _show(s)


def _load(facts: dict[str, object]) -> str:
    load = facts.get("load")
    return f"{load[0]:.2f}" if isinstance(load, list) and load else "-"


@cluster_app.command("members")
def cluster_members(fmt: FormatOpt = Format.table) -> None:
    """Every member: online, cordoned, features, load, instances."""
    with client() as c:
        items = api.members(c)
    if output.emit_structured(items, fmt):
        return
    rows = []
    for m in items:
        features = m.facts.get("features", {})
        assert isinstance(features, dict)
        rows.append([
            m.node, "online" if m.online else "offline", "yes" if m.cordoned else "no",
            str(features.get("vm", "-")), "yes" if features.get("criu") else "no",
            str(m.facts.get("instances", "-")), _load(m.facts),
            str(m.facts.get("version", "-")), m.url or "-"])
    output.table(["NODE", "STATE", "CORDONED", "VM", "CRIU", "INSTANCES", "LOAD", "VERSION",
                  "URL"], rows)


def host_cordon(node: str) -> None:
    """Cordon a member: no new instances are made there."""
    with client() as c:
        api.cordon(c, node, True)
    output.console.print(f"[bold]{node}[/] cordoned: no new instances there")


def host_uncordon(node: str) -> None:
    """Uncordon a member: new instances may be made there again."""
    with client() as c:
        api.cordon(c, node, False)
    output.console.print(f"[bold]{node}[/] uncordoned")


ParallelOpt = Annotated[int, typer.Option("--parallel", "-p", min=1, max=MAX_PARALLEL,
                                          help="instances moved at once")]


def host_evacuate(
    node: str,
    stop: Annotated[bool, typer.Option(
        "--stop", help="stop where they are the instances no other member can take")] = False,
    parallel: ParallelOpt = DEFAULT_PARALLEL,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the operation id")] = False,
) -> None:
    """Cordon a member and live-migrate each of its instances to the member placement picks
    (a result per instance; `corral host restore NODE` brings them back)."""
    _bulk_like(lambda c: api.evacuate(c, node, EvacuateRequest(stop=stop, parallel=parallel)),
               f"evacuate {node}", no_wait)


def host_restore(
    node: str, parallel: ParallelOpt = DEFAULT_PARALLEL,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the operation id")] = False,
) -> None:
    """Uncordon a member and migrate back what `corral host evacuate` moved away from it."""
    _bulk_like(lambda c: api.restore(c, node, RestoreRequest(parallel=parallel)),
               f"restore {node}", no_wait)


def _bulk_like(send: Callable[[CorralClient], OperationModel], label: str,
               no_wait: bool) -> None:
    with client() as c:
        parent = send(c)
        if no_wait:
            print(parent.id)
            return
        done = follow(c, parent, label)
        items = c.children(parent.id)
    bulk.report(done, items)
