"""Test-only fault injection: named points in the services where a test makes corrald fail.

Off unless corrald is started with ``--test-faults`` (the shipped unit and setup.sh never
pass it); then ``CORRAL_TEST_FAULTS`` arms points, e.g. ``create.after_disk=kill,
start.begin=raise``. ``kill``: corrald sends itself SIGKILL at that point (a crash, to test
recovery at the next start); ``raise``: the operation fails there with a HostFailure. Each
armed point fires once. When nothing is armed a point costs one dict lookup of an empty dict.
"""

from __future__ import annotations

import logging
import os
import signal

from corral.domain.errors import HostFailure, InvalidInput

log = logging.getLogger("corral.faults")

ENV = "CORRAL_TEST_FAULTS"
ACTIONS = ("kill", "raise")

_armed: dict[str, str] = {}
_hit: list[str] = []


def parse(text: str) -> dict[str, str]:
    """``point=action,…`` -> {point: action}."""
    armed: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        point, sep, action = item.partition("=")
        if not sep or action not in ACTIONS or not point:
            raise InvalidInput(f"bad fault {item!r}: want POINT=kill or POINT=raise")
        armed[point] = action
    return armed


def arm(text: str) -> None:
    """Arm the points of ``text`` (only corrald's ``--test-faults`` calls this)."""
    _armed.update(parse(text))
    if _armed:
        log.warning("test faults armed: %s", ", ".join(f"{p}={a}" for p, a in _armed.items()))


def disarm() -> None:
    _armed.clear()
    _hit.clear()


def hit() -> list[str]:
    """The points that fired (raise only: a kill leaves no one to ask)."""
    return list(_hit)


def fault_point(name: str) -> None:
    """Fail here if a test armed ``name``."""
    if not _armed:
        return
    action = _armed.pop(name, None)
    if action is None:
        return
    log.warning("test fault at %s: %s", name, action)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    _hit.append(name)
    raise HostFailure(f"injected test fault at {name}")
