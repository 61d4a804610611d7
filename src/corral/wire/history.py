"""Wire models of the history for graphs (shared by api/ and client/)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HistoryPointModel(BaseModel):
    """One bucket: ``time`` is its start (Unix seconds); rates are means over the bucket."""

    time: int
    seconds: float = Field(description="the time the readings in the bucket covered (up to "
                                       "its step; less: the instance ran part of it)")
    cpu_percent: float = Field(description="percent of one CPU (a host: summed)")
    memory_used: int
    memory_total: int
    disk_read_bps: float = Field(description="bytes read per second")
    disk_write_bps: float
    net_rx_bps: float = Field(description="bytes per second into the instance, all NICs")
    net_tx_bps: float
    traffic: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='bytes per second per traffic class and direction: {"world": '
                    '{"in": 1.5, "out": 2.0}}')


class HistoryModel(BaseModel):
    instance: str | None = Field(description="None: the host (every instance summed)")
    range: str  # hour | day | month
    step: int = Field(description="seconds per point: 60 (hour, day) or 3600 (month)")
    start: int = Field(description="the range's first bucket start (Unix seconds)")
    end: int = Field(description="now (Unix seconds)")
    classes: list[str] = Field(description="traffic classes present in the points")
    points: list[HistoryPointModel] = Field(
        description="oldest first; a missing bucket: the instance was not running (or "
                    "corrald was not)")
