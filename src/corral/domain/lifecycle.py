"""The instance lifecycle state machine: which action is allowed from which state."""

from __future__ import annotations

from enum import StrEnum

from corral.domain.errors import Conflict


class State(StrEnum):
    CREATING = "creating"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    ERROR = "error"


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SUSPEND = "suspend"
    RESUME = "resume"
    DELETE = "delete"
    EXEC = "exec"
    CONSOLE = "console"


# Which states an action may begin from, and the state it passes through / ends in.
_ALLOWED: dict[Action, frozenset[State]] = {
    Action.START: frozenset({State.STOPPED, State.ERROR}),
    Action.STOP: frozenset({State.RUNNING, State.SUSPENDED, State.ERROR}),
    Action.RESTART: frozenset({State.RUNNING}),
    Action.SUSPEND: frozenset({State.RUNNING}),
    Action.RESUME: frozenset({State.SUSPENDED}),
    Action.DELETE: frozenset({State.STOPPED, State.ERROR}),
    Action.EXEC: frozenset({State.RUNNING}),
    Action.CONSOLE: frozenset({State.RUNNING, State.SUSPENDED}),
}

_HINTS: dict[tuple[Action, State | None], str] = {
    (Action.START, State.RUNNING): "use restart",
    (Action.START, State.SUSPENDED): "resume it instead",
    (Action.DELETE, None): "stop it first or use --force",
    (Action.EXEC, State.SUSPENDED): "resume it first",
    (Action.EXEC, None): "start it first",
    (Action.CONSOLE, None): "start it first",
    (Action.RESUME, None): "it is not suspended",
    (Action.SUSPEND, State.SUSPENDED): "it is already suspended",
}

TRANSIENT: frozenset[State] = frozenset(
    {State.CREATING, State.STARTING, State.STOPPING, State.DELETING}
)


def check(action: Action, state: State, name: str) -> None:
    """Raise Conflict with a clear reason unless ``action`` is allowed in ``state``."""
    if state in _ALLOWED[action]:
        return
    hint = _HINTS.get((action, state)) or _HINTS.get((action, None), "")
    if state in TRANSIENT:
        hint = "an operation is changing it; wait for it and try again"
    reason = f"cannot {action.value} '{name}': it is {state.value}"
    raise Conflict(f"{reason}; {hint}" if hint else reason)


def allowed(action: Action, state: State) -> bool:
    return state in _ALLOWED[action]
