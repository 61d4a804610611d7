"""Run corrald (``python bench/gc_probe.py <corrald options>``) recording its garbage
collections: on SIGUSR1 the record starts anew, on SIGUSR2 it is written as JSON to
``$CORRAL_GC_PROBE`` (generation, start on the monotonic clock, seconds, objects collected),
with the objects the collector tracks then. For bench/list_tail.py."""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
import time
from collections import Counter
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


gc.callbacks.append(_callback)
if os.environ.get("CORRAL_GC_PROBE_DEFAULT"):  # the collector as Python sets it (a baseline)
    gc.set_threshold = lambda *_args: None
signal.signal(signal.SIGUSR1, _reset)
signal.signal(signal.SIGUSR2, _write)
args = sys.argv[1:]  # start_daemon's prefix form: the whole "python -m corral.daemon.main …"
if "corral.daemon.main" in args:
    args = args[args.index("corral.daemon.main") + 1:]
sys.argv = ["corrald", *args]
runpy.run_module("corral.daemon.main", run_name="__main__", alter_sys=True)
