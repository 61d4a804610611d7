import pytest

from corral.domain.errors import Conflict
from corral.domain.lifecycle import Action, State, allowed, check


@pytest.mark.parametrize(
    ("action", "state"),
    [(Action.START, State.STOPPED), (Action.STOP, State.RUNNING), (Action.STOP, State.SUSPENDED),
     (Action.SUSPEND, State.RUNNING), (Action.RESUME, State.SUSPENDED),
     (Action.DELETE, State.STOPPED), (Action.EXEC, State.RUNNING),
     (Action.RESTART, State.RUNNING)],
)
def test_allowed(action: Action, state: State) -> None:
    assert allowed(action, state)
    check(action, state, "x")


@pytest.mark.parametrize(
    ("action", "state", "says"),
    [(Action.START, State.RUNNING, "it is running; use restart"),
     (Action.EXEC, State.SUSPENDED, "resume it first"),
     (Action.START, State.STARTING, "wait for it"),
     (Action.DELETE, State.RUNNING, "--force"),
     (Action.EXEC, State.STOPPED, "start it first"),
     (Action.RESUME, State.RUNNING, "not suspended"),
     (Action.SUSPEND, State.STOPPED, "it is stopped"),
     (Action.START, State.CREATING, "it is creating")],
)
def test_refused_with_reason(action: Action, state: State, says: str) -> None:
    assert not allowed(action, state)
    with pytest.raises(Conflict, match=says):
        check(action, state, "web1")


def test_no_action_from_transient_states_but_stop_and_console() -> None:
    for state in (State.CREATING, State.DELETING, State.STARTING, State.STOPPING):
        for action in Action:
            assert not allowed(action, state), (action, state)
