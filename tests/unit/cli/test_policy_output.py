"""How `corral host policy` shows each setting."""

from corral.cli.resources import _policy_value


def test_counts_are_whole_numbers_not_floats_in_e_notation() -> None:
    assert _policy_value("audit_max_entries", 1_000_000) == "1000000"
    assert _policy_value("audit_max_entries", 0) == "0 (no count limit)"


def test_ratios_days_and_switches() -> None:
    assert _policy_value("cpu", 32.0) == "32:1"
    assert _policy_value("memory", None) == "none"
    assert _policy_value("id_quarantine", 30.0) == "30d"
    assert _policy_value("ksm", True) == "on"
