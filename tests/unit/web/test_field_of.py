"""Which form field an API error message is about (``web/pages.field_of``): the console
shows the service's own words at that field."""

from __future__ import annotations

from corral.web.infra_changes import NETWORK_FIELDS, POOL_FIELDS, SCHEDULE_FIELDS
from corral.web.pages import field_of


def test_messages_of_the_infrastructure_forms_find_their_fields() -> None:
    said = {
        "gateway 10.78.0.1 is in none of the subnets": (NETWORK_FIELDS, "gateways"),
        "--vlan applies to networks of type vlan only": (NETWORK_FIELDS, "vlan"),
        "subnet 10.0.0.0/24 overlaps 10.0.0.0/16 of network 'a'": (NETWORK_FIELDS, "subnets"),
        "network name 'Bad' is not a DNS label": (NETWORK_FIELDS, "name"),
        "invalid link rate '9zbit'": (NETWORK_FIELDS, "link_rate"),
        "pool driver 'zfs' is not one of: dir, btrfs": (POOL_FIELDS, "driver"),
        "--daily '25:00' is not a time HH:MM": (SCHEDULE_FIELDS, "daily"),
        "no backup target 'nas'": (SCHEDULE_FIELDS, "target"),
    }
    for message, (fields, field) in said.items():
        assert field_of(message, fields) == field, message
    assert field_of("storage pool 'p' already exists", POOL_FIELDS) is None  # the form's
