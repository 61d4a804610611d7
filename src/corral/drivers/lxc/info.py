"""Reading what ``lxc-info`` says about a container (pure parsing)."""

from __future__ import annotations

from corral.drivers.base import RuntimeState, RuntimeStatus

_STATES = {
    "RUNNING": RuntimeState.RUNNING,
    "STOPPED": RuntimeState.STOPPED,
    "FROZEN": RuntimeState.SUSPENDED,
    "FREEZING": RuntimeState.SUSPENDED,
    "THAWED": RuntimeState.RUNNING,
    "STARTING": RuntimeState.RUNNING,
    "STOPPING": RuntimeState.RUNNING,
    "ABORTING": RuntimeState.RUNNING,
}


def parse_info(text: str) -> RuntimeStatus:
    """Status from ``lxc-info -s -p -i`` output ("State:   RUNNING", "PID:  42", "IP: ...")."""
    state: RuntimeState | None = None
    raw_state = ""
    pid: int | None = None
    addresses: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "state":
            raw_state = value
            state = _STATES.get(value.upper())
        elif key == "pid" and value.isdigit():
            pid = int(value)
        elif key == "ip" and value:
            addresses.append(value)
    if state is None:
        return RuntimeStatus(RuntimeState.MISSING, details={"lxc_state": raw_state or "?"})
    if state == RuntimeState.STOPPED:
        pid = None
    return RuntimeStatus(
        state, pid=pid, addresses=tuple(addresses), details={"lxc_state": raw_state}
    )
