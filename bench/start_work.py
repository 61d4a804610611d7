"""What one CT start costs corrald, counted rather than timed (a loaded host makes start
latency noise; these figures barely move): corrald's on-CPU time per start (all its threads,
from /proc/PID/task/*/schedstat), SQL statements per start and commands it starts per start.

Run it with a checkout's own interpreter to compare two commits on the same host:
    sudo .venv/bin/python bench/start_work.py [--runs 30]
    sudo /other/.venv/bin/python bench/start_work.py --repo /other   (that checkout's tests/)

The counts come from a ``sitecustomize`` this script puts on the daemon's PYTHONPATH (a
sqlite3 trace callback and a wrapper of ``os.posix_spawn[p]`` and of
``corral.host.libcspawn.posix_spawnp``), in a second daemon, so that
the on-CPU figures are taken without it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SITE = '''
import os, sqlite3
_LOG = os.environ["CORRAL_START_WORK_LOG"]
def _note(what):
    with open(_LOG, "a") as f:
        f.write(what + "\\n")
_connect = sqlite3.connect
def _traced(*a, **k):
    con = _connect(*a, **k)
    con.set_trace_callback(lambda sql: _note("sql " + " ".join(sql.split())[:100]))
    return con
sqlite3.connect = _traced
for _name in ("posix_spawn", "posix_spawnp"):
    def _wrap(real):
        def spawn(path, argv, *a, **k):
            _note("spawn " + os.path.basename(str(argv[0])))
            return real(path, argv, *a, **k)
        return spawn
    setattr(os, _name, _wrap(getattr(os, _name)))
try:  # corrald spawns through ctypes where libc allows (host/libcspawn.py)
    from corral.host import libcspawn as _libcspawn
    def _libc_spawn(real):
        def spawn(path, argv, *a, **k):
            _note("spawn " + os.path.basename(str(argv[0])))
            return real(path, argv, *a, **k)
        return spawn
    _libcspawn.posix_spawnp = _libc_spawn(_libcspawn.posix_spawnp)
except ImportError:  # an older checkout
    pass
'''


def on_cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose tests/ start the daemon (default: this one)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sys.path.insert(0, str(args.repo))
    from corral.templates.builders.tiny import build_tiny
    from corral.wire.models import CreateRequest, StopRequest
    from tests.integration.conftest import remove_nft_tables, start_daemon, stop_daemon

    root = Path(tempfile.mkdtemp(prefix="corral-bench-startwork-"))
    root.chmod(0o711)
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    log = root / "work.log"
    cpu: list[float] = []
    counts: dict[str, float] = {}
    try:
        for counting in (False, True):
            state = root / ("counted" if counting else "state")
            state.mkdir()
            build_tiny(state / "templates" / "tiny")
            old = dict(os.environ)
            if counting:
                os.environ["PYTHONPATH"] = os.pathsep.join(
                    [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
                os.environ["CORRAL_START_WORK_LOG"] = str(log)
            daemon = start_daemon(state, drivers="real")  # (older checkouts: no real_daemon_in)
            try:
                with daemon.client() as c:
                    op = c.create_instance(CreateRequest(name="sw-ct", type="ct",
                                                         template="tiny", memory="160M",
                                                         disk="64M"))
                    if c.wait(op.id).status != "success":
                        raise RuntimeError("create failed")
                    runs = args.runs if not counting else min(args.runs, 10)
                    for i in range(runs + 2):  # two warm-up starts
                        time.sleep(0.2)
                        log.unlink(missing_ok=True)
                        before = on_cpu_ns(daemon.process.pid)
                        started = c.action("sw-ct", "start", wait=60)
                        after = on_cpu_ns(daemon.process.pid)
                        if started.status != "success":
                            raise RuntimeError(f"start failed: {started.error}")
                        if i >= 2 and not counting:
                            cpu.append((after - before) / 1e6)
                        if i >= 2 and counting:
                            for line in log.read_text().splitlines():
                                kind = line.split()[0] + " " + (
                                    line.split()[1] if line.startswith("spawn") else "")
                                counts[kind.strip()] = counts.get(kind.strip(), 0) + 1 / runs
                        c.wait(c.action("sw-ct", "stop", StopRequest(force=True, timeout=0)).id)
                    c.wait(c.delete_instance("sw-ct", force=True).id)
            finally:
                stop_daemon(daemon)
                remove_nft_tables(state)  # its guest is gone: so go its tables
                os.environ.clear()
                os.environ.update(old)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    quartiles = statistics.quantiles(cpu, n=4)
    print(f"corrald on-CPU per CT start: median {statistics.median(cpu):.2f} ms "
          f"(quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}, {len(cpu)} starts)")
    for what, n in sorted(counts.items()):
        print(f"  {what}: {n:.1f} per start")
    print(f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
