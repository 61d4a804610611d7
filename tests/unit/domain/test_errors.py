from __future__ import annotations

from corral.domain.errors import reason


def test_reason_is_the_text_or_else_the_type() -> None:
    assert reason(TimeoutError()) == "TimeoutError"
    assert reason(OSError("no route to host")) == "no route to host"
