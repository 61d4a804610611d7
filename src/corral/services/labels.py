"""Labels on instances: set, remove, read (validated by ``domain/labels.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from corral.domain.errors import InvalidInput
from corral.domain.labels import check_labels, validate_key, validate_value
from corral.services.events import EventBus
from corral.state.store import StateStore


class LabelService:
    def __init__(self, store: StateStore, events: EventBus) -> None:
        self.store = store
        self.events = events

    def get(self, ref: str) -> dict[str, str]:
        return self.store.labels(self.store.get_instance(ref).id)

    def change(self, ref: str, set_: Mapping[str, str] | None = None,
               unset: list[str] | None = None) -> dict[str, str]:
        """Set ``set_`` and remove ``unset`` (keys it does not carry are no error); the
        instance's labels afterwards."""
        set_, unset = dict(set_ or {}), list(unset or [])
        if not set_ and not unset:
            raise InvalidInput("give labels to set (key=value) or keys to remove")
        for key, value in set_.items():
            validate_value(validate_key(key), value)
        for key in unset:
            validate_key(key)
        both = sorted(set(set_) & set(unset))
        if both:
            raise InvalidInput(f"label {', '.join(both)} is both set and removed")
        rec = self.store.get_instance(ref)
        labels = self.store.change_labels(rec.id, set_, unset, check_labels)
        self.events.publish("instance.labels", instance=rec.name, labels=labels)
        return labels
