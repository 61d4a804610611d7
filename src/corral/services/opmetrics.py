"""Operations that ended since the daemon started, for /metrics: a counter by action and
status, and a duration histogram by action (real Prometheus buckets)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

from corral.domain.statuses import OperationStatus

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0)
"""Seconds: from a start (tens of ms) to a migration or backup of a large disk (an hour)."""


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _seconds(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class OperationMetrics:
    """Operations that ended since the daemon started: a counter by action and status and a
    duration histogram by action (Prometheus handles a counter's reset at a restart)."""

    FINAL = (OperationStatus.SUCCESS, OperationStatus.FAILURE, OperationStatus.CANCELLED,
             OperationStatus.SKIPPED)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: Counter[tuple[str, str]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}

    def record(self, action: str, status: OperationStatus, seconds: float) -> None:
        with self._lock:
            self._ended[(action, status.value)] += 1
            buckets = self._buckets.setdefault(action, [0] * (len(DURATION_BUCKETS) + 1))
            buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            self._sum[action] = self._sum.get(action, 0.0) + seconds

    def text(self, running: int) -> str:
        with self._lock:
            ended, sums = dict(self._ended), dict(self._sum)
            buckets = {a: list(b) for a, b in self._buckets.items()}
        lines = _family("corral_operations_running", "gauge",
                        "Operations running or waiting in this daemon now.")
        lines.append(f"corral_operations_running {running}")
        lines += _family("corral_operations_total", "counter",
                         "Operations ended since the daemon started, by action and status.")
        for action in sorted(buckets):  # every final status of a seen action, 0 too
            lines += [f'corral_operations_total{{action="{action}",status="{s.value}"}} '
                      f'{ended.get((action, s.value), 0)}' for s in self.FINAL]
        name = "corral_operation_duration_seconds"
        lines += _family(name, "histogram", "How long operations ran, by action.")
        for action in sorted(buckets):
            total = 0
            for bound, count in zip((*DURATION_BUCKETS, None), buckets[action], strict=True):
                total += count
                le = "+Inf" if bound is None else _seconds(bound)
                lines.append(f'{name}_bucket{{action="{action}",le="{le}"}} {total}')
            lines.append(f'{name}_sum{{action="{action}"}} {_seconds(sums[action])}')
            lines.append(f'{name}_count{{action="{action}"}} {total}')
        return "\n".join(lines) + "\n"
