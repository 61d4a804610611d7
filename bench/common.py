"""What every comparison in bench/ shares, so that each prints its figures the same way.

A ratio is only worth printing when both sides did the same work and stopped the clock at
the same moment, on the same host at the same time. So: a warm-up round of both sides runs
first and is discarded (cold page cache, first cgroup writes, lazy imports); then the rounds
alternate which side goes first; each round's two sides run back to back, so the median of
the per-round ratios (the *paired* ratio) cancels the slow drifts of this shared host, which
move both sides of a round alike. Every table starts with the conditions it ran under.

Ratios are Corral / raw: below 1 Corral took less time, above 1 it took more.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Measure = Callable[[], Mapping[str, float]]
"""One run of one side: the metrics it measured (seconds, or whatever unit the bench says)."""


def accelerator(argv: list[str] | None = None) -> str:
    """The accelerator a QEMU command line asks for (``-accel X``), or what this host has."""
    if argv and "-accel" in argv:
        return argv[argv.index("-accel") + 1].split(",")[0]
    if argv is None:
        try:
            fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return "none (no usable /dev/kvm)"
        os.close(fd)
        return "/dev/kvm present (no guest in this bench)"
    return "unknown"


def conditions(runs: int, accel: str, extra: str = "") -> str:
    """One line: where and under what this ran, to print above every table."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    parts = [f"host {platform.node()}", f"{os.cpu_count()} CPUs", f"kernel {platform.release()}",
             f"accelerator {accel}", f"{runs} runs + 1 warm-up (discarded), order alternated",
             f"load {load}", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())]
    if extra:
        parts.append(extra)
    return "conditions: " + "; ".join(parts)


@dataclass
class Samples:
    """Every counted run's metrics, per side, in run order (run i of both sides = round i)."""

    corral: dict[str, list[float]] = field(default_factory=dict)
    raw: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, got: Mapping[str, float]) -> None:
        into = self.corral if side == "corral" else self.raw
        for key, value in got.items():
            into.setdefault(key, []).append(value)


def paired_rounds(runs: int, corral: Measure, raw: Measure, samples: Samples | None = None,
                  label: str = "", warmup: int = 1,
                  before: Callable[[], None] | None = None) -> Samples:
    """``warmup`` discarded rounds, then ``runs`` rounds of both sides, alternating who goes
    first (the first counted round starts with the side the warm-up ran second).
    ``before``: untimed set-up at the start of every round, for both sides."""
    samples = samples if samples is not None else Samples()
    sides = (("corral", corral), ("raw", raw))
    for i in range(warmup + runs):
        order = sides if i % 2 == 0 else sides[::-1]
        if before is not None:
            before()
        got = {side: dict(fn()) for side, fn in order}
        tag = "warm-up (discarded)" if i < warmup else f"round {i - warmup + 1}/{runs}"
        said = "  ".join(f"{side} " + " ".join(f"{k}={v:.4g}" for k, v in got[side].items())
                         for side, _ in order)
        print(f"  {label}{tag}: {said}", flush=True)
        if i >= warmup:
            for side, _ in order:
                samples.add(side, got[side])
    return samples


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def bootstrap_ci(ratios: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % interval of the median of ``ratios`` (percentile bootstrap, fixed seed)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios)))
                     for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def number(value: float) -> str:
    """Three significant digits, no exponent below a million."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def spread(values: list[float], scale: float) -> str:
    """median [min-max], scaled (1000: seconds shown as ms)."""
    return (f"{number(statistics.median(values) * scale)} "
            f"[{number(min(values) * scale)}-{number(max(values) * scale)}]")


def paired(corral: list[float], raw: list[float]) -> str:
    """The median of the per-round ratios and its 95 % bootstrap interval."""
    ratios = [c / r for c, r in zip(corral, raw, strict=True) if r > 0]
    if not ratios:
        return "-"
    low, high = bootstrap_ci(ratios)
    return f"{statistics.median(ratios):.3g}x ({low:.3g}-{high:.3g})"


@dataclass
class Table:
    """Rows of (what, corral values, raw values); printed with medians, spread and ratios."""

    title: str
    unit: str = "ms"
    scale: float = 1000.0
    rows: list[tuple[str, list[float] | None, list[float] | None]] = field(default_factory=list)

    def add(self, what: str, corral: list[float] | None, raw: list[float] | None) -> None:
        self.rows.append((what, corral, raw))

    def add_samples(self, samples: Samples, names: Mapping[str, str]) -> None:
        """One row per metric key in ``names`` (key -> row label), both sides where present."""
        for key, what in names.items():
            self.add(what, samples.corral.get(key), samples.raw.get(key))

    def render(self) -> str:
        head = ["what", f"corral {self.unit} median [min-max]",
                f"raw {self.unit} median [min-max]", "median ratio", "paired ratio (95% CI)"]
        body = []
        for what, corral, raw in self.rows:
            cells = [what, spread(corral, self.scale) if corral else "-",
                     spread(raw, self.scale) if raw else "-", "-", "-"]
            if corral and raw and statistics.median(raw) > 0:
                cells[3] = f"{statistics.median(corral) / statistics.median(raw):.3g}x"
                if len(corral) == len(raw):
                    cells[4] = paired(corral, raw)
            body.append(cells)
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = [self.title]
        for r in [head, *body]:
            lines.append(" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
        return "\n".join(lines)


def write_samples(path: Path | None, tables: Mapping[str, Samples]) -> None:
    """Every run's values, for a later look (``--samples FILE``)."""
    if path is None:
        return
    path.write_text(json.dumps({k: {"corral": s.corral, "raw": s.raw}
                                for k, s in tables.items()}, indent=1))
