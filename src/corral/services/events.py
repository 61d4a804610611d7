"""An in-process event bus: lifecycle and operation events for /events and `corral monitor`."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from corral.wire.models import Event

Wanted = Callable[[str, dict[str, Any]], bool]


class Subscription:
    def __init__(self, bus: EventBus, wanted: Wanted | None = None) -> None:
        self._bus = bus
        self.wanted = wanted
        self.queue: queue.Queue[Event] = queue.Queue(maxsize=10000)

    def get(self, timeout: float | None = None) -> Event | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def subscribe(self, wanted: Wanted | None = None) -> Subscription:
        """``wanted(type, data)``: only the events it accepts are queued. A follower that
        ignores most events is then not woken for them -- on a start's path such a wake-up
        competes for the CPU with the starting guest."""
        sub = Subscription(self, wanted)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(
        self, type_: str, *, instance: str | None = None, operation: str | None = None,
        **data: Any,
    ) -> Event:
        event = Event(
            type=type_, time=datetime.now(UTC).isoformat(), instance=instance,
            operation=operation, data=data,
        )
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.wanted is not None and not sub.wanted(type_, data):
                continue
            with contextlib.suppress(queue.Full):  # a stalled reader loses events, not us
                sub.queue.put_nowait(event)
        return event
