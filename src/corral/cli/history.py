"""`corral stats NAME --history hour|day|month`: one sparkline per measure, with its range."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from corral.cli import output
from corral.wire.history import HistoryModel, HistoryPointModel

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 60  # characters per sparkline


def sparkline(values: Sequence[float | None], width: int = WIDTH) -> str:
    """``values`` (None: no sample) squeezed into ``width`` characters, each the mean of its
    share of the values; a blank where a share has no sample; scaled from 0 to the max."""
    if not values:
        return ""
    columns: list[float | None] = []
    for i in range(min(width, len(values))):
        lo, hi = i * len(values) // min(width, len(values)), \
            (i + 1) * len(values) // min(width, len(values))
        present = [v for v in values[lo:hi] if v is not None]
        columns.append(sum(present) / len(present) if present else None)
    top = max((v for v in columns if v is not None), default=0.0)
    return "".join(
        " " if v is None else BARS[0] if top <= 0 else
        BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in columns)


def _slots(model: HistoryModel) -> list[HistoryPointModel | None]:
    """One slot per bucket of the range (None where there is no point)."""
    by_time = {p.time: p for p in model.points}
    return [by_time.get(t) for t in range(model.start, model.end + 1, model.step)]


def _rate(value: float) -> str:
    return output.size(int(value)) + "/s"


def _traffic(cls: str, direction: str) -> Callable[[HistoryPointModel], float]:
    return lambda p: p.traffic.get(cls, {}).get(direction, 0.0)


def rows(model: HistoryModel) -> list[list[str]]:
    slots = _slots(model)
    measures: list[tuple[str, Callable[[HistoryPointModel], float], Callable[[float], str]]] = [
        ("cpu %", lambda p: p.cpu_percent, lambda v: f"{v:.1f}"),
        ("memory", lambda p: p.memory_used, lambda v: output.size(int(v))),
        ("disk read", lambda p: p.disk_read_bps, _rate),
        ("disk write", lambda p: p.disk_write_bps, _rate),
        ("net rx", lambda p: p.net_rx_bps, _rate),
        ("net tx", lambda p: p.net_tx_bps, _rate),
    ]
    for cls in model.classes:
        for direction in ("in", "out"):
            measures.append((f"{cls} {direction}", _traffic(cls, direction), _rate))
    found = []
    for name, get, show in measures:
        values = [None if p is None else get(p) for p in slots]
        present = [v for v in values if v is not None]
        if not present:
            found.append([name, "-", "-", "-", ""])
            continue
        found.append([name, show(sum(present) / len(present)), show(max(present)),
                      show(present[-1]), sparkline(values)])
    return found


def show(model: HistoryModel) -> None:
    def stamp(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")

    subject = model.instance or "this host"
    every = "minute" if model.step == 60 else "hour"
    output.console.print(f"{subject}: the last {model.range}, a sample per {every}, "
                         f"{stamp(model.start)} .. {stamp(model.end)}; "
                         f"{len(model.points)} samples")
    output.table(["MEASURE", "MEAN", "MAX", "LAST", "HISTORY"], rows(model))
