"""The event bus queues for a subscriber only the events it wants."""

from __future__ import annotations

from corral.services.events import EventBus


def test_a_filtered_subscriber_gets_only_what_it_wants() -> None:
    bus = EventBus()
    everything = bus.subscribe()
    states = bus.subscribe(lambda type_, data: type_ == "instance.state"
                           and data.get("state") == "running")
    bus.publish("operation.created", instance="a", operation="1", action="start")
    bus.publish("instance.state", instance="a", state="starting")
    bus.publish("instance.state", instance="a", state="running")
    assert [e.type for e in iter(lambda: everything.get(0), None)] == [
        "operation.created", "instance.state", "instance.state"]
    got = [e.data["state"] for e in iter(lambda: states.get(0), None)]
    assert got == ["running"]
    everything.close()
    states.close()
