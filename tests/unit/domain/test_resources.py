import pytest

from corral.domain.errors import InvalidInput
from corral.domain.resources import (
    KEYS,
    Resources,
    apply_settings,
    effective_quota_percent,
    format_cpu_list,
    parse_assignments,
    parse_cpu_list,
    to_settings,
)

MiB = 1024**2


def test_apply_parses_each_key() -> None:
    res = apply_settings(Resources(), {"cpus": "2", "memory": "512M", "disk": "2G"})
    assert (res.cpus, res.memory, res.disk) == (2, 512 * 1024**2, 2 * 1024**3)


def test_every_issue_key_is_known_and_parsed() -> None:
    res = apply_settings(Resources(), {
        "cpus": "2", "cpu_limit": "50", "cpu_shares": "256", "cpu_pin": "1, 0,3-4",
        "memory": "1G", "memory_min": "256M", "swap": "128M", "disk": "2T",
        "io_read_bps": "10M", "io_write_bps": "5M", "io_iops": "300", "pids": "64",
        "max_cpus": "8",
    })
    assert res == Resources(
        cpus=2, cpu_limit=50, cpu_shares=256, cpu_pin="0-1,3-4", memory=1024**3,
        memory_min=256 * MiB, swap=128 * MiB, disk=2 * 1024**4, io_read_bps=10 * MiB,
        io_write_bps=5 * MiB, io_iops=300, pids=64, max_cpus=8,
    )
    assert set(KEYS) >= {"cpus", "cpu_limit", "cpu_shares", "cpu_pin", "memory", "memory_min",
                         "swap", "disk", "io_read_bps", "io_write_bps", "io_iops", "pids"}


def test_optional_keys_clear_with_none() -> None:
    res = apply_settings(Resources(cpu_limit=50, pids=10, swap=0), {
        "cpu_limit": "none", "pids": "max", "swap": ""})
    assert (res.cpu_limit, res.pids, res.swap) == (None, None, None)


def test_swap_zero_means_no_swap() -> None:
    assert apply_settings(Resources(), {"swap": "0"}).swap == 0


@pytest.mark.parametrize(
    ("settings", "says"),
    [({"cpus": "0"}, "at least 1"), ({"cpus": "-2"}, "at least 1"),
     ({"cpus": "two"}, "whole number"), ({"memory": "256"}, "no unit"),
     ({"memory": "1M"}, "below the minimum"), ({"colour": "red"}, "unknown resource key"),
     ({"memory_min": "1G", "memory": "512M"}, "must not exceed"),
     ({"cpu_shares": "1"}, "at least 2"), ({"cpu_limit": "0"}, "at least 1"),
     ({"cpu_pin": "0-"}, "not a CPU list"), ({"cpu_pin": "3-1"}, "backwards"),
     ({"io_read_bps": "1K"}, "below the minimum"), ({"memory": "none"}, "not a size")],
)
def test_invalid_settings(settings: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        apply_settings(Resources(), settings)


def test_round_trip_dict() -> None:
    res = Resources(cpus=3, memory=1024**3, cpu_pin="0", io_iops=5)
    assert Resources.from_dict(res.to_dict() | {"unknown": 1}) == res


def test_old_rows_without_new_keys_still_load() -> None:
    old = {"cpus": 1, "memory": 128 * MiB, "disk": 64 * MiB, "cpu_limit": None}
    assert Resources.from_dict(old).pids is None


def test_cpu_lists() -> None:
    assert parse_cpu_list("0-2,5") == (0, 1, 2, 5)
    assert format_cpu_list([5, 0, 1, 2, 7]) == "0-2,5,7"
    assert format_cpu_list([3]) == "3"


def test_assignments() -> None:
    assert parse_assignments(["cpus=2", "memory = 1G"]) == {"cpus": "2", "memory": "1G"}
    with pytest.raises(InvalidInput, match="key=value"):
        parse_assignments(["cpus"])


def test_changed_keys() -> None:
    assert Resources(cpus=2).changed_keys(Resources(cpus=2, pids=5)) == ["pids"]


def test_container_cpus_cap_parallelism() -> None:
    assert effective_quota_percent(Resources(cpus=2), ct=True) == 200
    assert effective_quota_percent(Resources(cpus=2, cpu_limit=50), ct=True) == 50
    assert effective_quota_percent(Resources(cpus=1, cpu_limit=300), ct=True) == 100
    assert effective_quota_percent(Resources(cpus=2), ct=False) is None
    assert effective_quota_percent(Resources(cpus=2, cpu_limit=150), ct=False) == 150


def test_to_settings_reads_back_to_the_same_resources() -> None:
    base = Resources()
    full = Resources(cpus=3, memory=300 * MiB + 512, disk=5 * 1024**3 + 4096, cpu_limit=150,
                     cpu_shares=2048, memory_min=100 * MiB + 1, cpu_pin="0-1,3", swap=0,
                     io_read_bps=10 * MiB, io_write_bps=4096, io_iops=7, pids=99, max_cpus=8)
    assert apply_settings(base, to_settings(full)) == full
    assert apply_settings(full, to_settings(base)) == base  # unset keys clear
    assert set(to_settings(full)) == set(KEYS)
