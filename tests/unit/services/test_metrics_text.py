"""Rendering of the /metrics exposition: exact integers, floats only where they are floats."""

from __future__ import annotations

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.drivers.base import InstanceStats
from corral.services.resources import Usage, capacity_metrics_text, metrics_text, sample


def _usage(state: State = State.RUNNING) -> Usage:
    stats = InstanceStats(running=True, cpu_ns=2_500_000_000, vcpus=2,
                          memory_used=1_073_741_824, memory_total=4_294_967_296,
                          disk_used=123_456_789_012, disk_size=10_737_418_240,
                          io_read_bytes=9_876_543_210_987, io_write_bytes=1)
    return Usage(instance="web1", kind=Kind.VM, state=state, time=0.0, stats=stats,
                 cpu_percent=12.345678, net_rx_bytes=1_234_567_891_234,
                 net_tx_bytes=0, resources=Resources())


def test_sample_renders_integers_exactly_and_floats_fully() -> None:
    assert sample(1_073_741_824) == "1073741824"
    assert sample(2**62 + 1) == str(2**62 + 1)
    assert sample(3.0) == "3"
    assert sample(12.345678) == "12.345678"
    assert sample(0.1 + 0.2) == repr(0.1 + 0.2)
    assert sample(float("nan")) == "NaN" and sample(float("inf")) == "+Inf"


def test_metrics_text_byte_counters_are_exact() -> None:
    text = metrics_text([_usage()])
    assert "e+" not in text
    label = '{instance="web1",type="vm"}'
    for line in (
        f"corral_instance_memory_used_bytes{label} 1073741824",
        f"corral_instance_memory_bytes{label} 4294967296",
        f"corral_instance_disk_used_bytes{label} 123456789012",
        f"corral_instance_io_read_bytes_total{label} 9876543210987",
        f"corral_instance_network_receive_bytes_total{label} 1234567891234",
        f"corral_instance_cpu_percent{label} 12.345678",
        f"corral_instance_cpu_seconds_total{label} 2.5",
        f"corral_instance_up{label} 1",
        f"corral_instance_vcpus{label} 2",
    ):
        assert line in text.splitlines(), line


def test_a_suspended_instance_is_not_up_and_its_state_is_named() -> None:
    lines = metrics_text([_usage(State.SUSPENDED)]).splitlines()
    assert 'corral_instance_up{instance="web1",type="vm"} 0' in lines
    label = 'instance="web1",type="vm"'
    assert f'corral_instance_state{{{label},state="suspended"}} 1' in lines
    assert f'corral_instance_state{{{label},state="running"}} 0' in lines
    assert "# TYPE corral_instance_state gauge" in lines
    states = [line for line in lines if line.startswith("corral_instance_state{")]
    assert len(states) == len(State) and sum(line.endswith(" 1") for line in states) == 1


def test_capacity_metrics_text_exact_and_skips_unknown() -> None:
    text = capacity_metrics_text({
        "memory": {"physical": 68_719_476_736, "allocated": 17_179_869_184},
        "cpu": {"physical": 8, "allocated": 2.5},
        "disk": {"physical": None, "allocated": 0},
    })
    lines = text.splitlines()
    assert 'corral_host_physical{resource="memory"} 68719476736' in lines
    assert 'corral_host_allocated{resource="memory"} 17179869184' in lines
    assert 'corral_host_allocated{resource="cpu"} 2.5' in lines
    assert 'corral_host_allocated{resource="disk"} 0' in lines
    assert "None" not in text
