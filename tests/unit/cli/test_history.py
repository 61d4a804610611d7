"""`corral stats --history`'s table: sparklines over the range's buckets, gaps as blanks."""

from __future__ import annotations

from corral.cli.history import rows, sparkline
from corral.wire.history import HistoryModel, HistoryPointModel


def _point(t: int, cpu: float, out: float = 0.0) -> HistoryPointModel:
    return HistoryPointModel(time=t, seconds=60, cpu_percent=cpu, memory_used=1 << 20,
                             memory_total=1 << 30, disk_read_bps=0, disk_write_bps=2048,
                             net_rx_bps=0, net_tx_bps=0,
                             traffic={"world": {"out": out}} if out else {})


def test_sparkline_scales_to_the_max_and_leaves_gaps_blank() -> None:
    assert sparkline([0.0, 50.0, 100.0, None]) == "▁▅█ "
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([]) == ""
    assert len(sparkline([float(i) for i in range(1440)])) == 60  # a day in 60 columns


def test_rows_cover_the_range_with_one_slot_per_bucket() -> None:
    model = HistoryModel(instance="web", range="hour", step=60, start=0, end=300,
                         classes=["world"],
                         points=[_point(60, 10.0), _point(180, 30.0, out=4096)])
    table = {r[0]: r for r in rows(model)}
    assert table["cpu %"][1:4] == ["20.0", "30.0", "30.0"]  # mean, max, last
    assert table["cpu %"][4] == " ▃ █  "  # slots 0..300: gaps where there is no point
    assert table["disk write"][1] == "2K/s"
    assert table["world out"][2] == "4K/s" and table["world in"][1] == "0B/s"
    empty = HistoryModel(instance="idle", range="day", step=60, start=0, end=120,
                         classes=[], points=[])
    assert all(r[1:] == ["-", "-", "-", ""] for r in rows(empty))
