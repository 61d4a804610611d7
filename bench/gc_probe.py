"""Run corrald (``python bench/gc_probe.py <corrald options>``) recording its garbage
collections: on SIGUSR1 the record starts anew, on SIGUSR2 it is written as JSON to
``$CORRAL_GC_PROBE`` (generation, start on the monotonic clock, seconds, objects collected),
with the objects the collector tracks then. For bench/list_tail.py.

It also times some of the daemon's own steps (generation -2 in the record, with ``what``,
the thread and its CPU seconds): a list's ``list_all``, its runtime-state batch and its
JSON, every database write transaction (any thread: a state correction, the history
sampler's rows) and the history sampler's reading -- to name what a slow list sample
overlapped."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import runpy
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

seen: list[dict[str, Any]] = []
began: list[float] = [0.0]


def _callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        began[0] = time.monotonic()
    else:
        seen.append({"generation": info["generation"], "start": began[0],
                     "seconds": time.monotonic() - began[0], "collected": info["collected"]})


def _reset(_signum: int, _frame: object) -> None:
    seen.clear()


def _write(_signum: int, _frame: object) -> None:
    items = list(seen)
    objects = gc.get_objects()
    kinds = Counter(type(o).__qualname__ for o in objects)
    items.append({"generation": -1, "start": 0.0, "seconds": 0.0, "collected": len(objects),
                  "frozen": gc.get_freeze_count(), "kinds": kinds.most_common(12)})
    del objects
    path = os.environ["CORRAL_GC_PROBE"]
    with open(path + ".tmp", "w") as out:
        json.dump(items, out)
    os.replace(path + ".tmp", path)


def _timed(what: str, function: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.monotonic(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            seen.append({"generation": -2, "what": what, "start": start,
                         "seconds": time.monotonic() - start, "cpu": time.thread_time() - cpu,
                         "thread": threading.current_thread().name, "collected": 0})
    return timed


def _timed_context(what: str, function: Any) -> Any:
    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        start, cpu = time.monotonic(), time.thread_time()
        try:
            with function(*args, **kwargs) as value:
                yield value
        finally:
            seen.append({"generation": -2, "what": what, "start": start,
                         "seconds": time.monotonic() - start, "cpu": time.thread_time() - cpu,
                         "thread": threading.current_thread().name, "collected": 0})
    return timed


def _probe_steps() -> None:
    from corral.api import convert
    from corral.services.history import HistorySampler
    from corral.services.instances import InstanceService
    from corral.state.database import Database

    InstanceService.list_all = _timed("list_all", InstanceService.list_all)  # type: ignore[method-assign]
    InstanceService.runtime_statuses = _timed(  # type: ignore[method-assign]
        "runtime_statuses", InstanceService.runtime_statuses)
    InstanceService.specs = _timed("specs", InstanceService.specs)  # type: ignore[method-assign]
    from corral.drivers.lxc.watch import StateCache
    StateCache.statuses = _timed("lxc states", StateCache.statuses)  # type: ignore[method-assign]
    convert.instances_json = _timed("json", convert.instances_json)
    HistorySampler.tick = _timed("history tick", HistorySampler.tick)  # type: ignore[method-assign]
    Database.transaction = _timed_context(  # type: ignore[method-assign]
        "write transaction", Database.transaction)


gc.callbacks.append(_callback)
_probe_steps()
if os.environ.get("CORRAL_GC_PROBE_DEFAULT"):  # the collector as Python sets it (a baseline)
    gc.set_threshold = lambda *_args: None
signal.signal(signal.SIGUSR1, _reset)
signal.signal(signal.SIGUSR2, _write)
args = sys.argv[1:]  # start_daemon's prefix form: the whole "python -m corral.daemon.main …"
if "corral.daemon.main" in args:
    args = args[args.index("corral.daemon.main") + 1:]
sys.argv = ["corrald", *args]
runpy.run_module("corral.daemon.main", run_name="__main__", alter_sys=True)
