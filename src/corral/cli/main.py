"""The `corral` command."""

from __future__ import annotations

from typing import Annotated

import typer

from corral import __version__
from corral.cli import (
    backups,
    capacity,
    cluster,
    console,
    groups,
    host,
    instances,
    labels,
    migration,
    networks,
    operations,
    resources,
    users,
)
from corral.cli.storage import register as register_storage

app = typer.Typer(
    name="corral", help="VMs and containers on one host, one model.", no_args_is_help=True,
    pretty_exceptions_enable=False, add_completion=False,
)
app.command()(instances.create)
app.command()(instances.start)
app.command()(instances.stop)
app.command()(instances.restart)
app.command()(instances.suspend)
app.command()(instances.resume)
app.command()(instances.delete)
app.command("list")(instances.list_)
app.command()(instances.info)
app.command("exec", context_settings={"ignore_unknown_options": True})(instances.exec_)
app.command()(console.console)
app.command()(operations.monitor)
app.add_typer(operations.app, name="operation")
app.add_typer(host.host_app, name="host")
app.add_typer(host.template_app, name="template")
app.add_typer(networks.network_app, name="network")
app.add_typer(networks.nic_app, name="nic")
app.add_typer(networks.bandwidth_app, name="bandwidth")
app.command()(networks.netstat)
app.command("set")(resources.set_)
app.command()(resources.stats)
app.command()(resources.top)
host.host_app.command("policy")(resources.policy)
host.host_app.command("history")(resources.host_history)
app.command()(capacity.capacity)
app.command()(migration.migrate)
app.add_typer(migration.remote_app, name="remote")
app.add_typer(migration.migration_app, name="migration")
host.host_app.command("join")(migration.host_join)
host.host_app.command("pairing")(migration.host_pairing)
host.host_app.command("cordon")(cluster.host_cordon)
host.host_app.command("uncordon")(cluster.host_uncordon)
host.host_app.command("evacuate")(cluster.host_evacuate)
host.host_app.command("restore")(cluster.host_restore)
app.add_typer(cluster.cluster_app, name="cluster")
app.add_typer(groups.group_app, name="group")

app.add_typer(labels.label_app, name="label")
app.add_typer(users.user_app, name="user")
app.command()(users.owner)
app.command()(users.whoami)
app.add_typer(users.token_app, name="token")
app.command()(users.audit)
app.add_typer(backups.snapshot_app, name="snapshot")
app.add_typer(backups.backup_app, name="backup")
app.command()(backups.restore)
register_storage(app)


def _version(value: bool) -> None:
    if value:
        print(f"corral {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """VMs and containers on one host, one model."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
