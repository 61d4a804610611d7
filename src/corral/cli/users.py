"""`corral user …`, `corral owner` and `corral whoami`."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from corral.cli import output
from corral.cli.common import client, fail
from corral.cli.output import Format
from corral.client.users import UserCalls
from corral.wire.users import UserTokenModel

user_app = typer.Typer(help="Users and their API tokens (owners see only their instances)",
                       no_args_is_help=True)
token_app = typer.Typer(help="Scoped API tokens: read-only, or limited to named instances",
                        no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or yaml")]


def _show_token(made: UserTokenModel, verb: str) -> None:
    output.console.print(f"{verb} {made.user.role} [bold]{made.user.name}[/]. Its API token "
                         "(shown only now; corrald keeps only a hash):", highlight=False)
    print(made.token)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="a DNS label, e.g. alice")],
    role: Annotated[str, typer.Option(help="owner (its own instances and backups), operator "
                                           "(every instance, network, pool, backup; not users "
                                           "or host policy) or admin (everything)")]
        = "owner",
) -> None:
    """Add a user; print its API token once."""
    with client() as c:
        _show_token(UserCalls(c).add(name, role), "Added")


@user_app.command("list")
def user_list(fmt: FormatOpt = Format.table) -> None:
    """The users, their roles and the instances they own."""
    with client() as c:
        found = UserCalls(c).users()
    if not output.emit_structured(found, fmt):
        output.table(["NAME", "ROLE", "INSTANCES", "CREATED"], [
            [u.name, u.role, ", ".join(u.instances) or "-", u.created_at[:19]] for u in found])


@user_app.command("remove")
def user_remove(name: str) -> None:
    """Remove a user (refused while it owns instances); its token stops working."""
    with client() as c:
        UserCalls(c).remove(name)
    output.console.print(f"User {name} removed")


@user_app.command("passwd")
def user_passwd(
    name: str,
    stdin: Annotated[bool, typer.Option("--password-stdin",
                                        help="read the password from stdin (one line)")]
        = False,
) -> None:
    """Set a user's web console password (asked twice on a terminal); its sessions end."""
    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"New console password for {name}: ")
        if getpass.getpass("Again: ") != password:
            fail("the two passwords differ; nothing changed")
    else:
        fail("no terminal to ask the password on: pass it with --password-stdin")
    with client() as c:
        UserCalls(c).set_password(name, password)
    output.console.print(f"Console password of {name} set (log in at https://HOST:PORT/ui/)",
                         highlight=False)


@user_app.command("token")
def user_token(name: str) -> None:
    """Give a user a new API token (printed once); the old one stops working."""
    with client() as c:
        _show_token(UserCalls(c).rotate_token(name), "New token for")


def owner(
    ref: Annotated[str, typer.Argument(help="instance name or id")],
    user: Annotated[str | None, typer.Argument(help="the user it belongs to")] = None,
    none: Annotated[bool, typer.Option("--none", help="no owner: administrators only")]
        = False,
) -> None:
    """Give an instance to a user (or to no one with --none)."""
    if (user is None) == (not none):
        fail("name a user, or --none (not both)")
    with client() as c:
        made = UserCalls(c).set_owner(ref, user)
    output.console.print(f"{made.name}: owner {made.owner or '-'}", highlight=False)


def whoami(fmt: FormatOpt = Format.table) -> None:
    """Who this CLI talks to corrald as, and why: the token in CORRAL_TOKEN (at CORRAL_URL,
    or on the Unix socket), else local root on the Unix socket."""
    with client() as c:
        me = UserCalls(c).whoami()
        where = f"at {c.base_url}" if c.socket is None else f"on the Unix socket {c.socket}"
        if c.has_token:
            why = f"{where} with the token in CORRAL_TOKEN" + (
                " (unset it to act as local root)" if c.socket is not None else "")
        else:
            why = f"{where} without a token (CORRAL_TOKEN is not set): root on this host " \
                  "is an administrator there"
    if output.emit_structured({**me.model_dump(mode="json"), "why": why}, fmt):
        return
    print(f"{me.name} ({me.role})" if me.user else f"{me.name}: {me.role}")
    print(f"  {why}")


@token_app.command("create")
def token_create(
    user: Annotated[str | None, typer.Option(
        help="the user it is for (an administrator must name one; an owner: itself)")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="no call that changes "
                                            "anything")] = False,
    instance: Annotated[list[str] | None, typer.Option(
        "--instance", help="limit it to this instance (repeat for more)")] = None,
) -> None:
    """Make a scoped token (printed once): --read-only, --instance NAME, or both."""
    with client() as c:
        made = UserCalls(c).create_token(user, read_only, instance or None)
    t = made.token
    limits = (["read-only"] if t.read_only else []) + (
        [f"instances {', '.join(t.instances)}"] if t.instances is not None else [])
    output.console.print(f"Token [bold]{t.id}[/] of {t.user} ({'; '.join(limits)}), shown "
                         "only now (corrald keeps only a hash):", highlight=False)
    print(made.secret)


@token_app.command("list")
def token_list(fmt: FormatOpt = Format.table) -> None:
    """Scoped tokens (an owner: its own)."""
    with client() as c:
        found = UserCalls(c).tokens()
    if not output.emit_structured(found, fmt):
        output.table(["ID", "USER", "READ-ONLY", "INSTANCES", "CREATED"], [
            [t.id, t.user, "yes" if t.read_only else "no",
             ", ".join(t.instances) if t.instances is not None else "all", t.created_at[:19]]
            for t in found])


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="its id, e.g. tok-1a2b3c4d")]
                 ) -> None:
    """Revoke a scoped token: it stops working at once."""
    with client() as c:
        UserCalls(c).revoke_token(token_id)
    output.console.print(f"Token {token_id} revoked", highlight=False)


def audit(
    user: Annotated[str | None, typer.Option(help="calls by this user")] = None,
    instance: Annotated[str | None, typer.Option(help="calls naming this instance")] = None,
    since: Annotated[str | None, typer.Option(
        help="from this time (2026-12-06T10:00, UTC) or span ago (30m, 2h, 7d)")] = None,
    action: Annotated[str | None, typer.Option(
        help="this API action (e.g. delete_instance, start)")] = None,
    result: Annotated[str | None, typer.Option(help="ok, refused (4xx) or failed (5xx)")]
        = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """The audit log of mutating API calls: who, from where, what, the result."""
    with client() as c:
        found = UserCalls(c).audit(user=user, instance=instance, since=since, action=action,
                                   result=result, limit=limit)
    if not output.emit_structured(found, fmt):
        output.table(["TIME", "USER", "FROM", "ACTION", "INSTANCE", "STATUS", "MESSAGE"], [
            [e.at[:19], e.user + (f" ({e.token})" if e.token else ""), e.source, e.action,
             e.instance or "-", f"{e.status} {e.result}", (e.message or "")[:80]]
            for e in found])
