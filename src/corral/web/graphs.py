"""The instance page's graphs: CPU, memory, disk IO and network per traffic class over the
last hour, day or month, from the history corrald keeps (``services/history.py``, the data
of ``GET /api/v1/instances/{ref}/history``, asked of the policy by that route's name).

Drawn on the server as inline SVG (a polyline a series): no chart library, no script, and
nothing the strict Content-Security-Policy would block. A gap of more than two steps (the
instance was stopped, or corrald was) breaks the line instead of bridging it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from corral.domain.sizes import format_size
from corral.services.history import Range, Sample
from corral.web.pages import Ctx
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)

WIDTH, HEIGHT = 600.0, 120.0


@dataclass(frozen=True)
class Series:
    label: str
    css: str  # the stroke's class (colours in app.css, per theme)
    paths: tuple[str, ...]  # polyline points, one string per unbroken run
    last: str


@dataclass(frozen=True)
class Graph:
    id: str
    title: str
    top: str  # the value at the top of the plot
    series: tuple[Series, ...]


def _rate(value: float) -> str:
    return f"{format_size(int(value))}/s"


def _percent(value: float) -> str:
    return f"{value:.0f} %"


def _bytes(value: float) -> str:
    return format_size(int(value))


def plot(samples: Sequence[Sample], since: int, end: int, step: int,
         lines: Sequence[tuple[str, str, Callable[[Sample], float]]],
         fmt: Callable[[float], str], floor: float = 0.0) -> tuple[str, tuple[Series, ...]]:
    """The top label and the series of one graph (``lines``: label, class, value of a
    sample)."""
    top = max([floor] + [value(s) for s in samples for _l, _c, value in lines]) or 1.0
    span = max(end - since, 1)
    found = []
    for label, css, value in lines:
        runs: list[list[str]] = []
        previous: int | None = None
        for s in samples:
            if previous is None or s.ts - previous > 2 * step:
                runs.append([])
            x = (s.ts - since) / span * WIDTH
            y = HEIGHT - value(s) / top * (HEIGHT - 4)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            previous = s.ts
        last = fmt(value(samples[-1])) if samples else "-"
        for run in runs:  # a lone point: a short dash, so it shows
            if len(run) == 1:
                lone_x, lone_y = run[0].split(",")
                run.append(f"{min(float(lone_x) + 4, WIDTH):.1f},{lone_y}")
        found.append(Series(label, css, tuple(" ".join(r) for r in runs if r), last))
    return fmt(top), tuple(found)


def _traffic(cls: str, direction: str) -> Callable[[Sample], float]:
    return lambda s: s.traffic.get((cls, direction), 0.0)


def graphs(samples: Sequence[Sample], since: int, end: int, step: int) -> list[Graph]:
    made = []
    top, series = plot(samples, since, end, step,
                       [("CPU", "s1", lambda s: s.cpu_percent)], _percent, floor=100.0)
    made.append(Graph("g-cpu", "CPU (% of one CPU)", top, series))
    top, series = plot(samples, since, end, step,
                       [("used", "s1", lambda s: float(s.memory_used)),
                        ("limit", "s3", lambda s: float(s.memory_total))], _bytes)
    made.append(Graph("g-memory", "Memory", top, series))
    top, series = plot(samples, since, end, step,
                       [("read", "s1", lambda s: s.disk_read_bps),
                        ("write", "s2", lambda s: s.disk_write_bps)], _rate)
    made.append(Graph("g-disk", "Disk IO", top, series))
    classes = sorted({cls for s in samples for cls, _d in s.traffic})
    lines: list[tuple[str, str, Callable[[Sample], float]]] = []
    if classes:
        for n, cls in enumerate(classes[:4]):
            for direction, shade in (("in", "a"), ("out", "b")):
                lines.append((f"{cls} {direction}", f"c{n}{shade}", _traffic(cls, direction)))
    else:
        lines = [("in", "s1", lambda s: s.net_rx_bps), ("out", "s2", lambda s: s.net_tx_bps)]
    top, series = plot(samples, since, end, step, lines, _rate)
    title = "Network by traffic class" if classes else "Network"
    made.append(Graph("g-net", title, top, series))
    return made


@router.get("/instances/{name}/graphs", response_class=HTMLResponse)
async def instance_graphs(page: Ctx, name: str,
                          range_: Annotated[str, Query(alias="range")] = "hour") -> HTMLResponse:
    page.require("instance_history")
    span = Range.parse(range_)
    app = page.app

    def read() -> tuple[str, int, int, list[Sample]]:
        rec = page.policy.find_instance(app.store.get_instance, name)
        since, samples = app.history.series(rec.id, span)
        return rec.name, since, int(app.history.clock()), samples

    shown, since, end, samples = await run_in_threadpool(read)
    return page.render("_graphs.html", instance=shown, span=span.value,
                       spans=[r.value for r in Range], points=len(samples),
                       graphs=graphs(samples, since, end, span.step),
                       width=int(WIDTH), height=int(HEIGHT))
