"""One lock per instance: a second conflicting operation gets Busy, never a race."""

from __future__ import annotations

import threading

from corral.domain.errors import Busy


class InstanceLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, tuple[str, str]] = {}  # instance name -> (operation id, action)

    def acquire(self, instance: str, operation: str, action: str) -> None:
        with self._guard:
            holder = self._held.get(instance)
            if holder is not None:
                # a migration names itself: a resource change, a stop or a snapshot in the
                # middle of one is refused (the target was made from the instance as it was)
                doing = "is migrating" if holder[1].startswith("migrate") else "is busy"
                raise Busy(
                    f"'{instance}' {doing}: operation {holder[0]} ({holder[1]}) is running; "
                    f"wait for it (corral operation wait {holder[0]}) and try again"
                )
            self._held[instance] = (operation, action)

    def release(self, instance: str, operation: str) -> None:
        with self._guard:
            if self._held.get(instance, ("",))[0] == operation:
                del self._held[instance]

    def holder(self, instance: str) -> str | None:
        with self._guard:
            held = self._held.get(instance)
            return held[0] if held else None
