"""The audit log's retention in the host policy, through the real daemon (fake driver) and
CLI: shown, changed, bad values refused with nothing changed. The pruning itself runs in the
history sampler's hourly upkeep (tests/unit/services/test_audit.py, with a clock)."""

from __future__ import annotations

import json

from tests.integration.conftest import Daemon


def _policy(d: Daemon) -> dict[str, object]:
    shown: dict[str, object] = json.loads(d.cli("host", "policy", "-f", "json",
                                                check=True).stdout)
    return shown


def test_audit_retention_is_a_host_policy(daemon: Daemon) -> None:
    shown = _policy(daemon)
    assert shown["audit_retention"] == 365 and shown["audit_max_entries"] == 1_000_000
    said = daemon.cli("host", "policy", "audit_retention=90d", "audit_max_entries=5000",
                      check=True).stdout
    assert "90d" in said and "5000" in said
    for bad, reason in (("audit_retention=forever", "is not a duration"),
                        ("audit_max_entries=-3", "is not a whole number"),
                        ("audit_max_entries=lots", "is not a whole number")):
        answer = daemon.cli("host", "policy", bad)
        assert answer.returncode != 0 and reason in answer.stderr, (bad, answer.stderr)
    shown = _policy(daemon)
    assert shown["audit_retention"] == 90 and shown["audit_max_entries"] == 5000
    said = daemon.cli("host", "policy", "audit_retention=0", "audit_max_entries=0",
                      check=True).stdout
    assert "no age limit" in said and "no count limit" in said
