"""Operation counters and the duration histogram: cumulative buckets, every final status."""

from __future__ import annotations

from corral.domain.statuses import OperationStatus
from corral.services.opmetrics import DURATION_BUCKETS, OperationMetrics


def test_histogram_buckets_are_cumulative_and_count_matches() -> None:
    m = OperationMetrics()
    m.record("start", OperationStatus.SUCCESS, 0.01)
    m.record("start", OperationStatus.SUCCESS, 0.3)
    m.record("start", OperationStatus.FAILURE, 7200.0)
    lines = m.text(running=2).splitlines()
    assert "corral_operations_running 2" in lines
    assert 'corral_operations_total{action="start",status="success"} 2' in lines
    assert 'corral_operations_total{action="start",status="failure"} 1' in lines
    assert 'corral_operations_total{action="start",status="cancelled"} 0' in lines
    b = "corral_operation_duration_seconds_bucket"
    assert f'{b}{{action="start",le="0.05"}} 1' in lines
    assert f'{b}{{action="start",le="0.25"}} 1' in lines
    assert f'{b}{{action="start",le="0.5"}} 2' in lines
    assert f'{b}{{action="start",le="3600"}} 2' in lines
    assert f'{b}{{action="start",le="+Inf"}} 3' in lines
    assert 'corral_operation_duration_seconds_count{action="start"} 3' in lines
    assert 'corral_operation_duration_seconds_sum{action="start"} 7200.31' in lines
    assert sum(line.startswith(b) for line in lines) == len(DURATION_BUCKETS) + 1


def test_a_value_on_a_bound_is_in_that_bucket() -> None:
    m = OperationMetrics()
    m.record("stop", OperationStatus.SUCCESS, 1.0)
    lines = m.text(running=0).splitlines()
    assert 'corral_operation_duration_seconds_bucket{action="stop",le="0.5"} 0' in lines
    assert 'corral_operation_duration_seconds_bucket{action="stop",le="1"} 1' in lines
