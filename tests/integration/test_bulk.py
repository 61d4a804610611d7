"""Bulk operations and labels through a real corrald (fake driver): the CLI, the SDK, one
parent operation with a child per item, cancel, exit codes and the owners' policy.

(Never bulk exec here: the fake driver's exec runs on the host -- see tests/system.)"""

from __future__ import annotations

import json

import pytest

from corral.client import ApiError
from corral.domain.bulk import BulkAction
from corral.wire.bulk import BulkCreate, BulkRequestModel
from tests.integration.conftest import Daemon
from tests.integration.test_owners import add_user, cli_as, client_as, ok, refused


def states(daemon: Daemon) -> dict[str, str]:
    with daemon.client() as c:
        return {i.name: i.state for i in c.list_instances()}


def results(out: str) -> dict[str, tuple[str, str]]:
    """NAME -> (RESULT, MESSAGE) of a bulk command's table (plain columns when piped)."""
    found = {}
    for line in out.splitlines()[1:]:
        name, result, *message = line.split(None, 2)
        found[name] = (result, message[0].strip() if message else "")
    return found


def test_bulk_create_labels_lifecycle_and_delete(daemon: Daemon) -> None:
    run = daemon.cli
    made = run("create", "web-{1..5}", "--type", "ct", "--template", "tiny", "--start",
               "--label", "role=web", "--parallel", "3")
    assert made.returncode == 0, made.stderr
    assert results(made.stdout) == {f"web-{i}": ("ok", "") for i in range(1, 6)}
    assert "5 ok of 5" in made.stderr
    ok(run("create", "db", "--count", "2", "--type", "vm", "--label", "role=db"))
    assert states(daemon) == {**{f"web-{i}": "running" for i in range(1, 6)},
                              "db-1": "stopped", "db-2": "stopped"}

    # labels: set, unset, shown in info and the API record; selectors in list
    assert ok(run("label", "set", "web-1", "tier=front", "canary=yes")).strip() == \
        "web-1: canary=yes,role=web,tier=front"
    assert ok(run("label", "unset", "web-1", "canary")).strip() == "web-1: role=web,tier=front"
    assert "role=web,tier=front" in ok(run("info", "web-1"))
    assert json.loads(ok(run("label", "list", "web-1", "-f", "json"))) == {
        "role": "web", "tier": "front"}
    with daemon.client() as c:
        assert c.get_instance("web-1").labels == {"role": "web", "tier": "front"}
    chosen = json.loads(ok(run("list", "--selector", "role=web,tier!=front", "-f", "json")))
    # (ids follow the order the parallel creates reached the database, not the names')
    assert sorted(i["name"] for i in chosen) == ["web-2", "web-3", "web-4", "web-5"]
    with daemon.client() as c:
        assert [i.name for i in c.list_instances(selector="tier")] == ["web-1"]
    refused(run("label", "set", "web-1", "Bad=x"), "label key 'Bad'")
    refused(run("list", "--selector", "role=,,"), "empty term")

    # bulk stop by selector, one item failing (suspended: a stop... is allowed; use start)
    ok(run("suspend", "web-3"))
    stopped = run("stop", "--selector", "role=web,tier!=front", "--force")
    assert stopped.returncode == 0, stopped.stderr
    assert {n: r for n, (r, _m) in results(stopped.stdout).items()} == {
        "web-2": "ok", "web-3": "ok", "web-4": "ok", "web-5": "ok"}
    # start of a set where one is already running (skipped) and one is missing (failed)
    started = run("start", "web-1", "web-2", "ghost", "web-4")
    assert started.returncode == 1
    assert results(started.stdout) == {"web-1": ("skipped", "already running"),
                                       "web-2": ("ok", ""), "ghost": ("failed",
                                                                       "no instance 'ghost'"),
                                       "web-4": ("ok", "")}
    assert "2 ok, 1 failed, 1 skipped of 4" in started.stderr

    # the parent operation and its children
    ops = json.loads(ok(run("operation", "list", "-f", "json")))
    assert all(o["parent"] is None for o in ops)  # items are not listed among operations
    parent = next(o for o in ops if o["action"] == "bulk-start")
    assert parent["status"] == "failure" and parent["error"] == "2 ok, 1 failed, 1 skipped of 4"
    shown = ok(run("operation", "show", parent["id"]))
    for word in ("web-2", "ghost", "no instance 'ghost'", "skipped", "already running"):
        assert word in shown
    with daemon.client() as c:
        children = c.children(parent["id"])
    assert [(ch.instance, ch.status, ch.parent) for ch in children] == [
        ("web-1", "skipped", parent["id"]), ("web-2", "success", parent["id"]),
        ("ghost", "failure", parent["id"]), ("web-4", "success", parent["id"])]

    # --fail-fast: after the first failure the rest is skipped (parallel 1: in order)
    ff = run("start", "ghost", "web-3", "web-5", "--fail-fast", "--parallel", "1")
    assert ff.returncode == 1
    assert {n: r for n, (r, _m) in results(ff.stdout).items()} == {
        "ghost": "failed", "web-3": "skipped", "web-5": "skipped"}
    assert states(daemon)["web-5"] == "stopped"

    # delete of many asks first; without a terminal it needs --yes and deletes nothing
    refused(run("delete", "--selector", "role=web", "--force"), "needs --yes")
    assert len(states(daemon)) == 7
    # one item refused by the service (running, no --force): failed, the others deleted
    refused(run("delete", "db-1", "db-2", "web-1", "web-2"), "needs --yes")  # more than 3
    gone = run("delete", "db-1", "db-2", "web-1")
    assert gone.returncode == 1
    assert results(gone.stdout)["web-1"][0] == "failed"
    assert "is running" in results(gone.stdout)["web-1"][1]
    assert sorted(states(daemon)) == ["web-1", "web-2", "web-3", "web-4", "web-5"]
    ok(run("delete", "--selector", "role=web", "--force", "--yes"))
    assert states(daemon) == {}


def test_bulk_create_refuses_bad_requests_and_reports_conflicts(daemon: Daemon) -> None:
    run = daemon.cli
    refused(run("create", "web-{1..3", "--type", "ct"), "unbalanced brace")
    refused(run("create", "w{1..2000}", "--type", "ct"), "more than 1000")
    refused(run("create", "Bad-{1..2}", "--type", "ct"), "DNS label")
    refused(run("create", "a-{1..2}", "--type", "ct", "--template", "nope"),
            "unknown template 'nope'")
    refused(run("start", "--selector", "role=none"), "no instance matches")
    assert states(daemon) == {}
    ok(run("create", "a-2", "--type", "ct"))
    made = run("create", "a-{1..3}", "--type", "ct")
    assert made.returncode == 1
    assert results(made.stdout)["a-2"] == ("failed", "an instance named 'a-2' already exists")
    assert sorted(states(daemon)) == ["a-1", "a-2", "a-3"]
    # --count numbers after the highest a-<n> taken; --first sets it
    assert set(results(ok(run("create", "a", "--count", "2", "--type", "ct")))) == {"a-4", "a-5"}
    again = run("create", "a", "--count", "1", "--first", "5", "--type", "ct")
    assert again.returncode == 1
    assert results(again.stdout) == {"a-5": ("failed", "an instance named 'a-5' already exists")}
    refused(run("create", "a", "--first", "9", "--type", "ct"), "--first goes with --count")
    ok(run("delete", "a-4", "a-5"))
    # --no-wait: the parent's id at once
    parent_id = ok(run("stop", "a-1", "a-3", "--no-wait")).strip()
    # both were stopped already: skipped, which is no failure
    assert "succeeded" in ok(run("operation", "wait", parent_id))
    with daemon.client() as c:
        assert {ch.status for ch in c.children(parent_id)} == {"skipped"}


def test_exec_takes_a_one_word_command_with_a_selector(daemon: Daemon) -> None:
    """`exec --selector K=V -- uptime`: the only word after -- is the command (it was taken
    for the instance argument: "Missing argument 'argv'"). The instances are stopped, so
    nothing runs on this host (the fake driver's exec would)."""
    run = daemon.cli
    ok(run("create", "x-{1..2}", "--type", "ct", "--label", "role=x"))
    out = run("exec", "--selector", "role=x", "--", "uptime")
    assert "Missing argument" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    assert {name: result for name, (result, _m) in results(out.stdout).items()} == {
        "x-1": "failed", "x-2": "failed"}
    assert "is stopped" in results(out.stdout)["x-1"][1]
    no_command = run("exec", "x-1")
    assert no_command.returncode == 2
    assert "give the command to run after --" in no_command.stderr
    ok(run("delete", "--selector", "role=x", "--yes"))


def test_cancel_of_the_parent_skips_what_has_not_started(daemon: Daemon) -> None:
    with daemon.client() as c:
        names = [f"c-{i}" for i in range(80)]
        op = c.bulk(BulkRequestModel(action=BulkAction.CREATE, names=names, parallel=1,
                                     create=BulkCreate(type="ct", template="tiny")))
        c.cancel_operation(op.id)
        done = c.wait(op.id)
        assert done.status == "cancelled"
        children = c.children(op.id)
        assert [ch.instance for ch in children] == names
        by_status: dict[str, int] = {}
        for ch in children:
            assert ch.status.final
            by_status[ch.status] = by_status.get(ch.status, 0) + 1
        assert by_status.get("skipped", 0) >= 1
        made = {i.name for i in c.list_instances()}
        assert made == {ch.instance for ch in children if ch.status == "success"}
        assert all(ch.phase == "skipped: the bulk operation was cancelled"
                   for ch in children if ch.status == "skipped")
        assert done.error is not None and "skipped" in done.error


def test_owners_act_only_on_their_own(daemon: Daemon) -> None:
    alice = add_user(daemon, "alice")
    ok(daemon.cli("create", "mine-{1..2}", "--type", "ct", "--owner", "alice",
                  "--label", "team=a"))
    ok(daemon.cli("create", "theirs", "--type", "ct", "--label", "team=a"))
    # owners may not start instances at all: the bulk form is refused the same way
    refused(cli_as(daemon, alice, "start", "mine-1", "mine-2"), "may not start instance")
    refused(cli_as(daemon, alice, "create", "n-{1..2}", "--type", "ct"),
            "may not create instance")
    # backups they may: their own only; another's named instance fails as a missing one,
    # a selector never picks it
    ok(daemon.cli("backup", "target", "add", "nas", str(daemon.state_dir / "nas")))
    out = cli_as(daemon, alice, "backup", "create", "mine-1", "theirs", "--to", "nas")
    assert out.returncode == 1
    assert results(out.stdout) == {"mine-1": ("ok", ""),
                                   "theirs": ("failed", "no instance 'theirs'")}
    by_label = cli_as(daemon, alice, "backup", "create", "--selector", "team=a", "--to", "nas")
    assert by_label.returncode == 0, by_label.stderr
    assert sorted(results(by_label.stdout)) == ["mine-1", "mine-2"]
    refused(cli_as(daemon, alice, "backup", "create", "mine-1", "mine-2", "--to",
                   str(daemon.state_dir / "raw")), "only the backup targets")
    with client_as(daemon, alice) as c:
        assert c.labels("mine-1") == {"team": "a"}
        with pytest.raises(ApiError, match="may not change labels"):
            c.change_labels("mine-1", {"x": "y"})
        with pytest.raises(ApiError, match="no instance 'theirs'"):
            c.labels("theirs")
        ops = c.list_operations()
        assert {o.action for o in ops} == {"bulk-backup"}
        for op in ops:
            assert {ch.requested_by for ch in c.children(op.id)} == {"alice"}
        try:
            with daemon.client() as admin:
                theirs = next(o for o in admin.list_operations() if o.action == "create")
            c.children(theirs.id)
            raise AssertionError("an owner listed another's operation's children")
        except ApiError as exc:
            assert exc.status == 404
