"""Host-level series: commitment, pools (an unreadable one is down, not an error), KSM."""

from __future__ import annotations

from corral.host.ksm import KsmStatus
from corral.services.hostmetrics import commitment_text, ksm_text, pools_text
from corral.storage.pools.base import PoolUsage


def test_commitment_ratio_and_policy_limit() -> None:
    report: dict[str, dict[str, float | int | None]] = {
        "memory": {"physical": 8, "allocated": 12, "ratio": 1.5, "max_ratio": 2.0},
        "disk": {"physical": None, "allocated": 3, "ratio": None, "max_ratio": None},
    }
    lines = commitment_text(report).splitlines()
    assert 'corral_host_commitment_ratio{resource="memory"} 1.5' in lines
    assert 'corral_host_commitment_max_ratio{resource="memory"} 2' in lines
    assert not any('resource="disk"' in line for line in lines)


def test_pools_unreadable_pool_is_down_and_has_no_usage() -> None:
    lines = pools_text([("default", "dir", PoolUsage(100, 40, 60), 3),
                        ("gone", "btrfs", None, 1)]).splitlines()
    assert 'corral_pool_used_bytes{pool="default",driver="dir"} 40' in lines
    assert 'corral_pool_up{pool="gone",driver="btrfs"} 0' in lines
    assert 'corral_pool_volumes{pool="gone",driver="btrfs"} 1' in lines
    assert not any(line.startswith('corral_pool_size_bytes{pool="gone"') for line in lines)


def test_ksm_series_only_where_the_kernel_has_it() -> None:
    assert ksm_text(KsmStatus(False)).splitlines()[-1] == "corral_host_ksm_available 0"
    lines = ksm_text(KsmStatus(True, True, 10, 30, 4096)).splitlines()
    assert "corral_host_ksm_saved_bytes 122880" in lines
    assert "corral_host_ksm_pages_sharing 30" in lines
