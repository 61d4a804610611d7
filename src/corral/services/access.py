"""Who may do what: Corral's whole authorization policy, in one place.

* An **admin** (the Unix socket, the daemon's own token, users with role ``admin``) may do
  everything.
* An **operator** manages instances, networks, storage, backups and operations -- every
  instance, backup and operation, like an admin -- but may not call ``ADMIN_ACTIONS``:
  users, their roles, tokens and passwords, host policy, and the host's trust in other hosts.
* An **owner** may call only the API actions in ``OWNER_ACTIONS`` (an action is the name of
  the API route, e.g. ``list_backups``); anything else is ``403 forbidden``
  ("user 'alice' (owner) may not delete network").
* Within those actions an owner sees only what is its own: instances whose ``owner`` is it,
  backups whose manifest records it as the instance's owner at backup time (so a backup of
  a since-deleted instance stays visible to its owner, and a backup taken before the
  instance changed hands stays with the previous owner), and operations it started.
  Anything else answers exactly as if it did not exist (404), so an owner cannot probe for
  other tenants' names.
* An owner reaches backups only through targets an admin added (no raw paths or URLs — they
  would read and write anywhere on the host — and no key files: a named target has its own).
* Event and console websockets are for admins and operators (closed with a reason for owners).
* The web console (``web/``) asks this same policy, by the same action names, for each page
  and each change: a page never checks permissions its own way.
* **Scoped tokens** narrow a user further (``Caller.read_only``/``instances``): a read-only
  token may call only routes that change nothing (GET); a token limited to instances
  reaches only those (others answer 404 like missing ones) and, of the routes that name no
  instance in their path, only ``OWNER_ACTIONS`` (which filter what they show). A scoped
  token never counts as an unrestricted administrator, and may not make tokens.
* Tokens: an administrator makes them for any user, an owner for itself.
* The audit log (``list_audit``) is for administrators only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from corral.backup.manifest import Manifest
from corral.domain.errors import Forbidden, InvalidInput, NotFound
from corral.domain.users import Caller, Role
from corral.state.store import InstanceRecord, OperationRecord

OWNER_ACTIONS = frozenset({
    "version", "whoami",
    "list_instances", "show_instance",
    "list_targets", "list_backups", "show_backup", "create_backup", "restore_backup",
    "list_operations", "show_operation", "wait_operation", "list_children",
    "run_bulk", "show_labels",
    "create_token", "list_tokens", "revoke_token",
})
"""API routes (by name) an owner may call; every other route is admin-only. ``run_bulk`` is
gated again per action (``Access.bulk``)."""

BULK_ROUTES = {
    "create": "create_instance", "start": "start_instance", "stop": "stop_instance",
    "restart": "restart_instance", "delete": "delete_instance", "snapshot": "create_snapshot",
    "backup": "create_backup", "exec": "exec_in_instance",
    "migrate": "migrate",
}
"""A bulk action -> the route of the same action on one instance: a bulk request is allowed
exactly when each of its items would be."""

ADMIN_ACTIONS = frozenset({
    # users and roles
    "list_users", "add_user", "rotate_token", "remove_user", "set_password",
    # host policy
    "set_policy",
    # the host's trust in other hosts, and what only a paired peer (the daemon's token) calls
    "list_remotes", "add_remote", "remove_remote", "pairing", "join",
    "reserve", "incoming_status", "heartbeat", "receive_disk", "receive_files", "commit",
    "abort",
    # the audit log
    "list_audit",
})
"""API routes (by name) an operator may not call; it may call every other one."""

T = TypeVar("T")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What a read-only token may send: the routes that change nothing."""

WORDING = {
    "host_info": "see the host's information",
    "get_policy": "see the over-commitment policy",
    "set_policy": "change the over-commitment policy",
    "capacity": "see the capacity and business case",
    "metrics": "read the metrics",
    "instance_history": "see an instance's history",
    "operation_log": "read an operation's log",
    "host_history": "see the host's history",
    "vnc": "open the VNC console",
}
"""How a refusal names an action whose route name does not read as a verb phrase."""


def describe(action: str) -> str:
    return WORDING.get(action, action.replace("_", " "))


class Access:
    """The policy applied to one caller."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    @property
    def admin(self) -> bool:
        """Sees and manages every instance, backup and operation (an admin or an operator;
        a scoped token never): which actions it may call is ``may``'s answer."""
        return self.caller.sees_all and not self.caller.scoped

    # Actions -------------------------------------------------------------------------
    def may(self, action: str) -> bool:
        if self.caller.role is Role.ADMIN:
            return True
        if self.caller.role is Role.OPERATOR:
            return action not in ADMIN_ACTIONS
        return action in OWNER_ACTIONS

    def require(self, action: str, method: str = "GET", instance: str | None = None,
                names_instance: bool = False) -> None:
        """Refuse ``action`` (a route's name, called with ``method``) unless the caller may.
        ``names_instance``: the route's path names an instance, ``instance`` is its name
        (None: there is no such instance; the route answers 404 itself)."""
        caller = self.caller
        if caller.read_only and method not in SAFE_METHODS:
            raise Forbidden(f"{caller.describe()} may not {describe(action)}: the token is "
                            "read-only")
        if caller.instances is None:
            allowed = self.may(action)
        elif names_instance:
            if instance is not None and instance not in caller.instances:
                raise NotFound(f"no instance '{instance}'")
            allowed = self.may(action)
        else:
            allowed = action in OWNER_ACTIONS
        if not allowed:
            raise Forbidden(f"{caller.describe()} may not {describe(action)}")

    def token_for(self, user: str | None) -> str:
        """The user a new scoped token is for: any user for an administrator (it must name
        one), the caller itself for an operator or an owner (a token for an admin would be
        more than an operator has); never from a scoped token."""
        if self.caller.scoped:
            raise Forbidden(f"{self.caller.describe()} may not make tokens")
        if self._full_admin:
            if user is None:
                raise InvalidInput("name the user the token is for (--user NAME)")
            return user
        if user is not None and user != self.caller.name:
            raise Forbidden(f"{self.caller.describe()} may make tokens only for itself")
        return self.caller.name

    def tokens_filter(self) -> str | None:
        """Whose tokens the caller lists (None: everyone's)."""
        return None if self._full_admin else self.caller.name

    @property
    def _full_admin(self) -> bool:
        return self.caller.role is Role.ADMIN and not self.caller.scoped

    def token(self, owner: str, token_id: str) -> None:
        """A token the caller may see or revoke; another user's answers 404."""
        if self.caller.scoped or not (self._full_admin or owner == self.caller.name):
            raise NotFound(f"no token '{token_id}'")

    def bulk(self, action: str) -> None:
        """A bulk ``action`` is allowed as the single-instance route it repeats; its items
        are then only the caller's instances (``owns``): another owner's named instance
        fails as a missing one, a selector never picks it."""
        self.require(BULK_ROUTES[action])

    def websocket(self, what: str) -> None:
        """Events and consoles: admins and operators (an owner's stream would need filtering)."""
        if not self.admin:
            raise Forbidden(f"{self.caller.describe()} may not {what}")

    # Ownership -----------------------------------------------------------------------
    def owns(self, owner: str | None) -> bool:
        """Is it the caller's (admins and operators: everything, token or not)?"""
        return self.caller.sees_all or (owner is not None and owner == self.caller.name)

    def in_scope(self, name: str) -> bool:
        return self.caller.instances is None or name in self.caller.instances

    def instance(self, record: InstanceRecord, ref: str) -> InstanceRecord:
        """``record`` if the caller may see it; else the same 404 as a missing instance."""
        if not (self.owns(record.owner) and self.in_scope(record.name)):
            raise NotFound(f"no instance '{ref}'")
        return record

    def find_instance(self, find: Callable[[str], InstanceRecord], ref: str) -> InstanceRecord:
        """The instance ``ref`` names (looked up with ``find``) if the caller may see it; a
        missing one and another owner's answer the same 404."""
        try:
            record = find(ref)
        except NotFound:
            raise NotFound(f"no instance '{ref}'") from None
        return self.instance(record, ref)

    def instances(self, items: Iterable[T], owner_of: Callable[[T], str | None],
                  name_of: Callable[[T], str] | None = None) -> list[T]:
        return [item for item in items if self.owns(owner_of(item))
                and (name_of is None or self.in_scope(name_of(item)))]

    def backup(self, manifest: Manifest | None, backup_id: str, target: str) -> Manifest:
        """``manifest`` (None: not found) if the caller may see it, else a plain 404."""
        if manifest is None or not self._sees(manifest):
            raise NotFound(f"no backup '{backup_id}' in target '{target}'")
        return manifest

    def backups(self, manifests: Iterable[Manifest]) -> list[Manifest]:
        return [m for m in manifests if self._sees(m)]

    def _sees(self, manifest: Manifest) -> bool:
        return self.owns(manifest.instance.owner) and self.in_scope(manifest.instance.name)

    def target(self, target: str, known: bool, key_file: str | None) -> None:
        """Owners use only targets an admin added, with the target's own key."""
        if self.admin:
            return
        if not known:
            raise Forbidden(f"{self.caller.describe()} may use only the backup targets an "
                            f"administrator added (`corral backup target list`), not '{target}'")
        if key_file is not None:
            raise Forbidden(f"{self.caller.describe()} may not name a key file; the target "
                            "uses its own")

    def operation(self, record: OperationRecord, ref: str) -> OperationRecord:
        if not self.admin and record.requested_by != self.caller.name:
            raise NotFound(f"no operation '{ref}'")
        return record

    @property
    def operations_filter(self) -> str | None:
        """Whose operations the caller lists (None: everyone's)."""
        return None if self.admin else self.caller.name

    def restored_owner(self, recorded: str | None, exists: bool) -> str | None:
        """The owner of an instance a restore creates: the caller if an owner restores it,
        else the owner the backup recorded (if that user still exists)."""
        if not self.admin:
            return self.caller.name
        return recorded if exists else None

    def restore_over(self, record: InstanceRecord) -> bool:
        """May the caller restore over this existing instance?"""
        return self.owns(record.owner) and self.in_scope(record.name)
