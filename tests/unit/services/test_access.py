"""The authorization policy (services/access.py), pure: callers, records, manifests."""

from __future__ import annotations

from datetime import datetime

import pytest

from corral.backup.manifest import InstanceInfo, Manifest
from corral.domain.errors import Forbidden, NotFound
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.domain.statuses import OperationStatus
from corral.domain.users import DAEMON_TOKEN, LOCAL_ROOT, Caller, Role
from corral.services.access import OWNER_ACTIONS, Access
from corral.state.store import InstanceRecord, OperationRecord

ALICE = Access(Caller("alice", Role.OWNER))
ADMIN_USER = Access(Caller("carol", Role.ADMIN))
NOW = datetime(2026, 11, 26)


def instance(name: str, owner: str | None) -> InstanceRecord:
    return InstanceRecord(101, name, Kind.CT, "tiny", State.STOPPED, Resources(), False, "n",
                          NOW, owner=owner)


def manifest(owner: str | None, backup_id: str = "web-1") -> Manifest:
    return Manifest(backup_id, InstanceInfo("web", 101, "ct", "tiny", {}, owner=owner), NOW,
                    0, 4 << 20, [])


def operation(requested_by: str | None) -> OperationRecord:
    return OperationRecord("op1", "backup", "web", OperationStatus.SUCCESS, 1.0, "done", None,
                           NOW, NOW, requested_by=requested_by)


@pytest.mark.parametrize("admin", [Access(LOCAL_ROOT), Access(DAEMON_TOKEN), ADMIN_USER])
def test_admins_may_do_everything_and_see_everything(admin: Access) -> None:
    for action in ("delete_network", "add_user", "set_policy", "list_instances"):
        admin.require(action)
    assert admin.instance(instance("db", "bob"), "db").name == "db"
    assert admin.instances([instance("a", None), instance("b", "bob")], lambda r: r.owner)
    assert admin.backup(manifest("bob"), "web-1", "nas").id == "web-1"
    admin.target("/srv/backups", known=False, key_file="/root/key")
    assert admin.operation(operation(None), "op1").id == "op1"
    assert admin.operations_filter is None
    admin.websocket("watch events")


def test_owner_actions_are_a_short_allow_list() -> None:
    for action in OWNER_ACTIONS:
        ALICE.require(action)
    for action, words in (("delete_network", "delete network"), ("add_user", "add user"),
                          ("set_policy", "change the over-commitment policy"),
                          ("start_instance", "start instance"), ("set_owner", "set owner")):
        with pytest.raises(Forbidden, match=f"user 'alice' \\(owner\\) may not {words}$"):
            ALICE.require(action)
    with pytest.raises(Forbidden, match="may not watch events"):
        ALICE.websocket("watch events")


def test_owners_see_their_own_and_others_look_missing() -> None:
    mine, bobs, nobodys = instance("web", "alice"), instance("db", "bob"), instance("x", None)
    assert ALICE.instance(mine, "web") is mine
    for other in (bobs, nobodys):
        with pytest.raises(NotFound, match=f"^no instance '{other.name}'$"):
            ALICE.instance(other, other.name)
    assert ALICE.instances([mine, bobs, nobodys], lambda r: r.owner) == [mine]


def test_owners_see_backups_recorded_as_theirs() -> None:
    assert ALICE.backup(manifest("alice"), "web-1", "nas").instance.owner == "alice"
    for found in (manifest("bob"), manifest(None), None):  # others', unowned, missing: alike
        with pytest.raises(NotFound, match=r"^no backup 'web-1' in target 'nas'$"):
            ALICE.backup(found, "web-1", "nas")
    kept = ALICE.backups([manifest("alice", "a"), manifest("bob", "b"), manifest(None, "c")])
    assert [m.id for m in kept] == ["a"]


def test_owners_use_only_named_targets_with_their_own_key() -> None:
    ALICE.target("nas", known=True, key_file=None)
    with pytest.raises(Forbidden, match="only the backup targets an administrator added"):
        ALICE.target("/etc", known=False, key_file=None)
    with pytest.raises(Forbidden, match="may not name a key file"):
        ALICE.target("nas", known=True, key_file="/etc/shadow")


def test_operations_and_restores() -> None:
    assert ALICE.operation(operation("alice"), "op1").id == "op1"
    for other in ("bob", None):
        with pytest.raises(NotFound, match="no operation 'op1'"):
            ALICE.operation(operation(other), "op1")
    assert ALICE.operations_filter == "alice"
    assert ALICE.restored_owner("alice", exists=True) == "alice"
    assert ADMIN_USER.restored_owner("alice", exists=True) == "alice"
    assert ADMIN_USER.restored_owner("alice", exists=False) is None
    assert ALICE.restore_over(instance("web", "alice"))
    assert not ALICE.restore_over(instance("web", "bob"))


OPERATOR = Access(Caller("olga", Role.OPERATOR))


def test_an_operator_manages_everything_but_users_roles_and_host_policy() -> None:
    for action in ("create_instance", "delete_instance", "set_resources", "create_network",
                   "create_pool", "create_backup", "restore_backup", "add_target",
                   "cancel_operation", "get_policy", "capacity", "migrate", "set_owner"):
        OPERATOR.require(action)
    for action, words in (("list_users", "list users"), ("add_user", "add user"),
                          ("set_password", "set password"),
                          ("set_policy", "change the over-commitment policy"),
                          ("add_remote", "add remote")):
        with pytest.raises(Forbidden, match=f"user 'olga' \\(operator\\) may not {words}$"):
            OPERATOR.require(action)
    # every instance, backup and operation, like an admin; raw targets; events and consoles
    assert OPERATOR.instance(instance("db", "bob"), "db").name == "db"
    assert OPERATOR.backup(manifest("bob"), "web-1", "nas").id == "web-1"
    OPERATOR.target("/srv/backups", known=False, key_file=None)
    assert OPERATOR.operations_filter is None
    OPERATOR.websocket("watch events")


def test_admin_only_actions_name_real_routes() -> None:
    """A typo in ADMIN_ACTIONS would let operators call the real route."""
    import importlib
    import pkgutil

    import corral.api
    from corral.services.access import ADMIN_ACTIONS

    routes = set()
    for info in pkgutil.iter_modules(corral.api.__path__):
        router = getattr(importlib.import_module(f"corral.api.{info.name}"), "router", None)
        routes |= {getattr(r, "name", "") for r in getattr(router, "routes", [])}
    assert "create_instance" in routes
    assert routes >= ADMIN_ACTIONS, sorted(ADMIN_ACTIONS - routes)


# Scoped tokens --------------------------------------------------------------------------

READ_ONLY_ADMIN = Access(Caller("carol", Role.ADMIN, token="tok-1", read_only=True))
ONLY_WEB = Access(Caller("carol", Role.ADMIN, token="tok-2", instances=frozenset({"web"})))
ALICE_ONLY_WEB = Access(Caller("alice", Role.OWNER, token="tok-3",
                               instances=frozenset({"web"})))


def test_a_read_only_token_reads_everything_its_user_may_and_changes_nothing() -> None:
    READ_ONLY_ADMIN.require("host_info", "GET")
    READ_ONLY_ADMIN.require("list_networks", "GET")
    for action, method in (("start_instance", "POST"), ("delete_network", "DELETE"),
                           ("set_policy", "PUT"), ("create_token", "POST")):
        with pytest.raises(Forbidden, match="read-only"):
            READ_ONLY_ADMIN.require(action, method)
    assert not READ_ONLY_ADMIN.admin  # never an unrestricted administrator
    with pytest.raises(Forbidden, match="may not make tokens"):
        READ_ONLY_ADMIN.token_for("carol")


def test_an_instance_token_reaches_only_its_instances() -> None:
    ONLY_WEB.require("start_instance", "POST", "web", names_instance=True)
    ONLY_WEB.require("start_instance", "POST", None, names_instance=True)  # 404 follows
    with pytest.raises(NotFound, match="no instance 'db'"):
        ONLY_WEB.require("start_instance", "POST", "db", names_instance=True)
    ONLY_WEB.require("list_instances")  # filtered below
    with pytest.raises(Forbidden, match="limited to web"):
        ONLY_WEB.require("create_network", "POST")
    with pytest.raises(Forbidden, match="limited to web"):
        ONLY_WEB.require("create_instance", "POST")  # would make one outside its scope
    records = [instance("web", None), instance("db", None)]
    assert [r.name for r in ONLY_WEB.instances(records, lambda r: r.owner,
                                               lambda r: r.name)] == ["web"]
    with pytest.raises(NotFound):
        ONLY_WEB.instance(instance("db", None), "db")
    assert ONLY_WEB.instance(instance("web", None), "web").name == "web"
    assert ONLY_WEB.backups([manifest(None)]) != []  # the backup's instance is 'web'
    assert not ONLY_WEB.restore_over(instance("db", None))


def test_an_owners_instance_token_stays_within_the_owner() -> None:
    with pytest.raises(Forbidden):  # an owner's route list does not grow with a token
        ALICE_ONLY_WEB.require("start_instance", "POST", "web", names_instance=True)
    with pytest.raises(NotFound):  # bob's web is not alice's, token or not
        ALICE_ONLY_WEB.instance(instance("web", "bob"), "web")
    assert ALICE_ONLY_WEB.instance(instance("web", "alice"), "web").owner == "alice"


def test_who_may_make_tokens_for_whom() -> None:
    assert ADMIN_USER.token_for("alice") == "alice"
    assert ALICE.token_for(None) == "alice"
    assert ALICE.token_for("alice") == "alice"
    with pytest.raises(Forbidden, match="only for itself"):
        ALICE.token_for("bob")
    ALICE.token("alice", "tok-9")
    with pytest.raises(NotFound):
        ALICE.token("bob", "tok-9")


def test_an_operator_makes_tokens_only_for_itself_and_does_not_read_the_audit_log() -> None:
    assert OPERATOR.token_for(None) == "olga"
    with pytest.raises(Forbidden, match="only for itself"):
        OPERATOR.token_for("carol")  # an admin's token would be more than olga has
    with pytest.raises(Forbidden, match="may not list audit"):
        OPERATOR.require("list_audit")
    assert OPERATOR.tokens_filter() == "olga"
