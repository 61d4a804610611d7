"""Bulk throughput: instances created and started per second through one bulk request.

* Corral: ``POST /api/v1/bulk`` create with ``start`` of N containers (and of M tiny VMs:
  "started" = the runtime up, what `corral start` waits for), then a bulk stop and a bulk
  delete of the same set; each timed from the request to the parent operation's end, as
  items per second.
* Ceilings, labelled as such (NOT the same work): ``lxc-start -d`` of K containers already
  prepared -- Corral's own configs and root disks, mounted the way Corral mounts them, no
  database, no API, no disk made -- and the very ``qemu-system-x86_64`` command lines of the
  VMs (until daemonized: "up"), each run with the same parallelism. They bound what any
  orchestration on this host could reach for "start a container" / "start a VM".

Run as root: .venv/bin/python bench/bulk.py [--cts 100] [--vms 10] [--parallel 8]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from start import READY, RawContainer, RawVm

from corral.client import CorralClient
from corral.domain.bulk import BulkAction
from corral.domain.resources import Resources
from corral.templates.builders.tiny import build_tiny
from corral.wire.bulk import BulkCreate, BulkRequestModel
from tests.integration.conftest import daemon_env, start_daemon, stop_daemon


def raw_cgroup(state: Path) -> Path | None:
    """A CPU cgroup beside the daemon's guests (under its cgroup root) for the raw QEMUs:
    Corral places every guest under that root, which competes for the CPU as one group; a
    raw QEMU left in this script's cgroup would compete as one more task of the host's root
    group (on a busy shared host a very different share). None where the host has no such
    hierarchy (then the raw side runs where this script runs: said in the output)."""
    root = daemon_env(state)["CORRAL_CGROUP_ROOT"]
    for base in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        if (base / root).is_dir() and (base / root / "cgroup.procs").exists():
            group = base / root / "bench-raw"
            group.mkdir(exist_ok=True)
            return group
    return None


def launch_in(group: Path | None, argv: list[str]) -> None:
    def enter() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    subprocess.run(argv, check=True, capture_output=True, preexec_fn=enter)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


CPU: list[str] = []

DB_SERIES = ("corral_db_write_transactions_total", "corral_db_write_wait_seconds_total",
             "corral_db_write_held_seconds_total")


def db_writes(c: CorralClient) -> tuple[float, ...]:
    """corrald's write transactions, seconds waited for its write lock, seconds held."""
    found = dict.fromkeys(DB_SERIES, 0.0)
    for line in c.metrics().splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return tuple(found[name] for name in DB_SERIES)


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed_bulk(c: CorralClient, request: BulkRequestModel,
               daemon_pid: int | None = None) -> tuple[float, int]:
    """Seconds from the request to the parent's end; how many items succeeded. With
    ``daemon_pid``: corrald's CPU seconds per item (its own; the tools it ran) noted."""
    before = cpu_seconds(daemon_pid) if daemon_pid else (0.0, 0.0)
    writes_before = db_writes(c)
    host_before = host_cpu()
    began = time.monotonic()
    parent = c.bulk(request)
    done = c.wait(parent.id)
    took = time.monotonic() - began
    children = c.children(parent.id)
    ok = sum(1 for ch in children if ch.status == "success")
    host_after = host_cpu()
    writes = [b - a for a, b in zip(writes_before, db_writes(c), strict=True)]
    if ok:
        busy = (host_after[0] - host_before[0]) / max(1, host_after[1] - host_before[1])
        CPU.append(f"{request.action.value} x{ok}: the host's CPUs {100 * busy:.0f} % busy "
                   f"during it ({os.cpu_count()} CPUs)")
        CPU.append(f"{request.action.value} x{ok}: {writes[0] / ok:.1f} write transactions per "
                   f"item, {1000 * writes[1] / ok:.2f} ms waiting for the write lock and "
                   f"{1000 * writes[2] / ok:.2f} ms holding it per item")
    if daemon_pid and ok:
        after = cpu_seconds(daemon_pid)
        CPU.append(f"{request.action.value} x{ok}: corrald {1000 * (after[0] - before[0]) / ok:.1f}"
                   f" ms CPU per item, the tools it ran {1000 * (after[1] - before[1]) / ok:.1f}"
                   " ms")
    if done.status != "success":
        failed = [f"{ch.instance}: {ch.error}" for ch in children if ch.status == "failure"]
        print(f"  {request.action.value}: {done.error}; e.g. {failed[:3]}", file=sys.stderr)
    return took, ok


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def profiler(out: Path | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` (the thread holding the GIL: its Python CPU) into ``out``
    until SIGINT."""
    if out is None:
        return None
    spy = py_spy()
    process = subprocess.Popen([spy, "record", "--gil", "--rate", "100", "--format", "raw",
                                "-o", str(out), "-p", str(pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached
    return process


def guests_ready(c: CorralClient, state: Path, names: list[str], began: float) -> str:
    """When each guest's init said it was ready (console), from the bulk request: median and
    last, as a row."""
    logs = [state / "instances" / str(c.get_instance(n).id) / "console.log" for n in names]
    ready: list[float] = []
    while logs and time.monotonic() - began < 120:
        for log in list(logs):
            with contextlib.suppress(FileNotFoundError):
                if READY in log.read_bytes():
                    ready.append(time.monotonic() - began)
                    logs.remove(log)
        time.sleep(0.05)
    ready.sort()
    median = ready[len(ready) // 2] if ready else float("nan")
    last = ready[-1] if ready else float("nan")
    return (f"{'  guests booted (console ready), from the request':<58} | {len(ready):>5} | "
            f"median {median:5.1f} s, last {last:5.1f} s")


def row(what: str, count: int, seconds: float) -> str:
    return f"{what:<58} | {count:>5} | {seconds:8.2f} s | {count / seconds:8.1f} /s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--cold", action="store_true",
                        help="do not make the template's base image before the timed bulk "
                             "(the first create of a template builds it: a one-time cost "
                             "inside the timed request)")
    parser.add_argument("--raw", type=int, default=-1,
                        help="instances for the raw ceilings (default: all; 0: none)")
    parser.add_argument("--launch-priority", default="1", metavar="N[,N…]",
                        help="host policy vm_launch_priority for the VM bulk; several: one "
                             "VM round (and raw ceiling) each, in this order (e.g. 1,8)")
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE",
                        help="py-spy (samples of the thread holding the GIL, raw format) "
                             "of corrald during the CT create")
    args = parser.parse_args()
    if args.profile is not None and not Path(py_spy()).exists():
        parser.error("--profile needs py-spy (`pip install py-spy` into this venv)")
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = Path(tempfile.mkdtemp(prefix="corral-bench-bulk-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    template = build_tiny(state / "templates" / "tiny")
    daemon = start_daemon(state, drivers="real")
    rows: list[str] = []
    raws: list[RawContainer] = []
    raw_vms: list[RawVm] = []
    try:
        with daemon.client() as c:
            # many tiny guests on 2 CPUs: over-commitment is what this measures around
            c.set_policy({"cpu": "none", "memory": "none", "disk": "none"})
            rounds = [("ct", args.cts, 1)] + [("vm", args.vms, int(p))
                                              for p in args.launch_priority.split(",")]
            for kind, count, priority in rounds:
                if count <= 0:
                    continue
                if kind == "vm":
                    c.set_policy({"vm_launch_priority": str(priority)})
                names = [f"b{kind}-{i}" for i in range(1, count + 1)]
                spec = BulkCreate(type=kind, template="tiny", memory="64M" if kind == "ct"
                                  else "128M", disk="64M", start=True)
                if not args.cold:  # the template's base image, made once per pool
                    warm = BulkCreate(type=kind, template="tiny", memory=spec.memory,
                                      disk="64M", start=False)
                    timed_bulk(c, BulkRequestModel(action=BulkAction.CREATE,
                                                   names=[f"w{kind}"], create=warm))
                    timed_bulk(c, BulkRequestModel(action=BulkAction.DELETE,
                                                   names=[f"w{kind}"], force=True))
                    CPU.clear()
                spy = profiler(args.profile, daemon.process.pid) if kind == "ct" else None
                began = time.monotonic()
                took, ok = timed_bulk(c, BulkRequestModel(
                    action=BulkAction.CREATE, names=names, parallel=args.parallel, create=spec),
                    daemon.process.pid)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                up = "running" if kind == "ct" else f"runtime up, launch priority {priority}"
                rows.append(row(f"{kind.upper()} create + start ({up}), one bulk request", ok,
                                took))
                if kind == "vm":  # the trade: how long the guests took to boot
                    rows.append(guests_ready(c, state, names, began))
                took, ok = timed_bulk(c, BulkRequestModel(
                    action=BulkAction.STOP, names=names, parallel=args.parallel, force=True))
                rows.append(row(f"{kind.upper()} stop --force, one bulk request", ok, took))
                if kind == "ct" and args.raw != 0:
                    chosen = names[:args.raw] if args.raw > 0 else names
                    for name in chosen:
                        made = c.get_instance(name)
                        raws.append(RawContainer(daemon, c, name, made.id,
                                                 root / f"raw-{made.id}"))
                    with ThreadPoolExecutor(args.parallel) as pool:
                        began = time.monotonic()
                        list(pool.map(lambda r: r.start(), raws))
                        took = time.monotonic() - began
                        rows.append(row("CEILING, not the same work: lxc-start -d of prepared "
                                        "CTs", len(raws), took))
                        list(pool.map(lambda r: r.stop(), raws))
                    raws = []
                if kind == "vm" and args.raw != 0:
                    for name in names[:args.raw] if args.raw > 0 else names:
                        made = c.get_instance(name)
                        res = Resources(cpus=made.resources.cpus, memory=made.resources.memory,
                                        disk=made.resources.disk)
                        raw_vms.append(RawVm(daemon, c, made.id, template,
                                             root / f"raw-{made.id}", res, name))
                    group = raw_cgroup(state)
                    with ThreadPoolExecutor(args.parallel) as pool:
                        began = time.monotonic()
                        launch = functools.partial(launch_in, group)
                        list(pool.map(launch, [r.argv for r in raw_vms]))
                        took = time.monotonic() - began
                        where = "" if group is not None else " (in this script's cgroup)"
                        rows.append(row("CEILING, not the same work: the same qemu-system-x86_64 "
                                        f"(up){where}", len(raw_vms), took))
                        list(pool.map(lambda r: r.stop(), raw_vms))
                    raw_vms = []
                    if group is not None:
                        group.rmdir()
                took, ok = timed_bulk(c, BulkRequestModel(
                    action=BulkAction.DELETE, names=names, parallel=args.parallel, force=True))
                rows.append(row(f"{kind.upper()} delete, one bulk request", ok, took))
    finally:
        for vm in raw_vms:
            try:
                vm.stop()
            except Exception as exc:  # cleanup goes on
                print(f"stopping a raw VM: {exc}", file=sys.stderr)
        for raw in raws:
            try:
                raw.stop()
            except Exception as exc:  # cleanup goes on
                print(f"stopping {raw.name}: {exc}", file=sys.stderr)
        stop_daemon(daemon)
        from tests.integration.conftest import delete_everything
        delete_everything(state)
        shutil.rmtree(root, ignore_errors=True)
    print()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"conditions: {os.cpu_count()} CPUs; load {load}; --parallel {args.parallel}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; one run each; "
          f"base image {'built inside' if args.cold else 'made before'} the timed bulk")
    print(f"{'what':<58} | {'items':>5} | {'time':>10} | {'rate':>10}")
    for line in rows:
        print(line)
    for line in CPU:
        print(line)


if __name__ == "__main__":
    main()
