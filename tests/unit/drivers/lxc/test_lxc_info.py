"""Parsing lxc-info output into a RuntimeStatus."""

from __future__ import annotations

from corral.drivers.base import RuntimeState
from corral.drivers.lxc.info import parse_info


def test_running_with_pid_and_addresses() -> None:
    text = "State:          RUNNING\nPID:            3355\nIP:   10.0.3.7\nIP:   fd00::7\n"
    status = parse_info(text)
    assert status.state == RuntimeState.RUNNING
    assert status.pid == 3355
    assert status.addresses == ("10.0.3.7", "fd00::7")


def test_frozen_is_suspended() -> None:
    status = parse_info("State:          FROZEN\nPID:            3775\n")
    assert status.state == RuntimeState.SUSPENDED
    assert status.pid == 3775
    assert status.details["lxc_state"] == "FROZEN"


def test_stopped_has_no_pid() -> None:
    status = parse_info("State:          STOPPED\n")
    assert status.state == RuntimeState.STOPPED and status.pid is None


def test_unrecognised_output_is_missing() -> None:
    assert parse_info("101 doesn't exist\n").state == RuntimeState.MISSING
