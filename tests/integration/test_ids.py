"""Instance ids through the real daemon (fake driver) and CLI: a deleted instance's id is
not given to the next create (issue 22 item 10); the quarantine is the host policy's."""

from __future__ import annotations

import json

from tests.integration.conftest import Daemon


def _create(d: Daemon, name: str) -> int:
    d.cli("create", name, "--type", "ct", check=True)
    shown = json.loads(d.cli("info", name, "-f", "json", check=True).stdout)
    return int(shown["id"])


def test_a_deleted_id_is_not_reused_by_the_next_create(daemon: Daemon) -> None:
    first = _create(daemon, "one")
    daemon.cli("delete", "one", "--force", check=True)
    second = _create(daemon, "two")
    assert second != first
    shown = daemon.cli("host", "policy", check=True).stdout
    assert "id_quarantine" in shown and "30d" in shown


def test_quarantine_zero_never_reuses_ids_only_grow(daemon: Daemon) -> None:
    said = daemon.cli("host", "policy", "id_quarantine=0", check=True).stdout
    assert "never reused" in said
    ids = [_create(daemon, "a"), _create(daemon, "b")]
    daemon.cli("delete", "a", "--force", check=True)
    daemon.cli("delete", "b", "--force", check=True)
    ids.append(_create(daemon, "c"))
    assert ids == sorted(ids) and len(set(ids)) == 3
    bad = daemon.cli("host", "policy", "id_quarantine=soon")
    assert bad.returncode != 0 and "is not a duration" in bad.stderr
    daemon.cli("host", "policy", "id_quarantine=12h", check=True)
    assert json.loads(daemon.cli("host", "policy", "-f", "json", check=True).stdout)[
        "id_quarantine"] == 0.5
