"""The one failed-authentication limiter (services/authlimit.py), on an injected clock."""

from __future__ import annotations

import pytest

from corral.services.authlimit import AuthFailure, FailedAuthLimiter, wait_message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_after_limit_failures_in_the_window() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(limit=3, window=60, clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.1", "api")
        clock.now += 1
    assert limiter.blocked("10.0.0.1") is None
    limiter.failed("10.0.0.1", "web", "alice")  # both surfaces count together
    wait = limiter.blocked("10.0.0.1")
    assert wait == pytest.approx(58)  # until the oldest failure leaves the window
    assert limiter.blocked("10.0.0.2") is None  # per address
    clock.now += 58
    assert limiter.blocked("10.0.0.1") is None
    limiter.failed("10.0.0.1", "api")  # the two newer ones are still in the window
    assert limiter.blocked("10.0.0.1") is not None


def test_failures_outside_the_window_are_forgotten() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(limit=2, window=10, clock=clock)
    limiter.failed("a", "api")
    clock.now += 11
    limiter.failed("a", "api")
    assert limiter.blocked("a") is None


def test_listeners_hear_every_failure_and_refusal() -> None:
    heard: list[AuthFailure] = []
    limiter = FailedAuthLimiter(limit=1, window=10, clock=Clock())
    limiter.listeners.append(heard.append)
    limiter.failed("a", "web", "bob")
    limiter.refused("a", "web", "bob")
    assert [(f.address, f.surface, f.user, f.blocked) for f in heard] == [
        ("a", "web", "bob", False), ("a", "web", "bob", True)]


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("corral.services.authlimit.MAX_CLIENTS", 3)
    limiter = FailedAuthLimiter(limit=1, window=10, clock=Clock())
    for n in range(5):
        limiter.failed(f"10.0.0.{n}", "api")
    assert limiter.blocked("10.0.0.0") is None and limiter.blocked("10.0.0.4") is not None


def test_bad_settings_and_the_message() -> None:
    with pytest.raises(ValueError):
        FailedAuthLimiter(limit=0)
    assert wait_message(0.2) .endswith("try again in 1 s")
    assert wait_message(41.5).endswith("try again in 42 s")
