"""``convert.instances_json``: the JSON of ``list`` is the models' JSON, byte for byte, and
it follows every change of a record or of what the runtime says."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pydantic import TypeAdapter

from corral.api import convert
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.drivers.base import RuntimeState, RuntimeStatus
from corral.services.instances import InstanceView
from corral.state.store import InstanceRecord
from corral.wire.models import InstanceModel

NOW = datetime(2026, 12, 6, 6, 0, 0, 123456)


def record(i: int, **changes: object) -> InstanceRecord:
    rec = InstanceRecord(i, f"web-{i}", Kind.VM if i % 2 else Kind.CT, "tiny", State.RUNNING,
                         Resources(cpu_limit=50 if i % 3 else None), False, "n1", NOW,
                         owner="ann" if i % 4 == 0 else None)
    return replace(rec, **changes)  # type: ignore[arg-type]


def models_json(views: list[InstanceView]) -> bytes:
    return TypeAdapter(list[InstanceModel]).dump_json([convert.instance(v) for v in views])


def views_of(records: list[InstanceRecord]) -> list[InstanceView]:
    found = []
    for rec in records:
        runtime = RuntimeStatus(RuntimeState.RUNNING, pid=1000 + rec.id,
                                details={"agent": "connected"} if rec.kind is Kind.VM else {})
        found.append(InstanceView(rec, State.RUNNING, runtime, None, (f"10.0.0.{rec.id}",)))
    return found


def test_the_json_is_the_models_json() -> None:
    records = [record(i) for i in range(1, 9)]
    views = [*views_of(records[:6]),
             InstanceView(records[6], State.STOPPED, None, None),
             InstanceView(records[7], State.STARTING, None, "start-op", ("10.0.0.8",))]
    assert convert.instances_json(views) == models_json(views)
    assert convert.instances_json(views) == models_json(views)  # again, from what was kept
    assert convert.instances_json([]) == b"[]"


def test_every_change_shows() -> None:
    rec = record(1)
    views = views_of([rec])
    first = convert.instances_json(views)
    assert convert.instances_json(views) == first
    base = views[0]
    changed = [
        replace(base, state=State.SUSPENDED),
        replace(base, addresses=("10.0.0.99",)),
        replace(base, runtime=RuntimeStatus(RuntimeState.RUNNING, pid=4242)),
        replace(base, operation="stop-op"),
        replace(base, runtime=None, state=State.STOPPED),
        replace(base, record=record(1, owner="bob")),
        replace(base, record=record(1, resources=Resources(memory=1 << 30))),
        replace(base, labels={"role": "web"}),
    ]
    for view in changed:
        answer = convert.instances_json([view])
        assert answer != first
        assert answer == models_json([view])
    assert convert.instances_json(views) == first
