"""Migration benchmark: Corral's VM live migration against a raw QMP migrate of the same guest,
and Corral's container migration (disk pre-copy, stop, final delta, start).

Two corralds run in two network namespaces joined by a bridge (tests/system/migration_lab).
The guest (the tiny template, 256 MiB) runs a counter writing a file 20 times a second.

* raw QMP: a second QEMU with the source's exact command line plus ``-incoming tcp:…``
  (same disk file: shared storage, RAM only), ``migrate`` with the same downtime limit;
  downtime = target RESUME event - source STOP event (QEMU's own timestamps), then the
  source is resumed and the raw target killed.
* Corral: ``corral migrate`` (NBD mirror of the disk + RAM pre-copy + commit over TLS);
  downtime = the target's wall clock after ``cont`` - the source's STOP event.

Run as root: ``.venv/bin/python bench/migrate.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.drivers.qemu.migrate import event_time, free_port
from corral.drivers.qemu.qmp import close_monitor, monitor
from corral.templates.builders.tiny import build_tiny
from tests.system.migration_lab import Host, Lab

COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /root/count; sleep 0.05; done")


def _exec(host: Host, name: str, script: str) -> str:
    done = host.cli("exec", name, "--", "sh", "-c", script, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def _wait_agent(host: Host, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if host.cli("exec", name, "--", "true").returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("the guest agent never answered")


def _qemu_argv(host: Host, name: str) -> tuple[int, list[str], Path]:
    info = host.instances()[name]
    run_dir = host.state_dir / "instances" / str(info["id"]) / "run"
    pid = int((run_dir / "qemu.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return pid, [a.decode() for a in argv], run_dir


def raw_migrate(host: Host, name: str, downtime_ms: int) -> tuple[float, float]:
    """(downtime ms, total ms) of a plain QMP migrate of the running guest to a twin QEMU.
    QEMU's one monitor is corrald's session while corrald runs: the host's corrald is
    stopped for this round (the guest runs on) and started again after (it re-adopts it)."""
    pid, argv, run_dir = _qemu_argv(host, name)
    twin = Path(tempfile.mkdtemp(prefix="raw-", dir="/tmp"))
    port = free_port("127.0.0.1")
    if "-incoming" in argv:  # it arrived by a migration itself: drop `-incoming defer -S`
        i = argv.index("-incoming")
        argv = argv[:i] + [a for a in argv[i + 2:] if a != "-S"]
    raw = [a.replace(str(run_dir), str(twin)) for a in argv]
    raw += ["-incoming", f"tcp:127.0.0.1:{port}"]
    # the source QEMU's namespaces: `ip netns exec` gave corrald its own mount namespace
    # (its pool mounts live there)
    subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", *raw], check=True, timeout=60)
    host.stop()
    target = monitor(twin / "qmp.sock")
    source = monitor(run_dir / "qmp.sock")
    try:
        with target.subscribe(["RESUME"]) as resumes, source.subscribe(["STOP"]) as stops:
            source.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "events", "state": True}]})
            source.execute("migrate-set-parameters", {"downtime-limit": downtime_ms,
                                                      "max-bandwidth": 1 << 40})
            started = time.monotonic()
            source.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
            event = resumes.get(120)
            if event is None:
                raise RuntimeError("the raw migration did not complete")
            resumed = event_time(event)
            total = (time.monotonic() - started) * 1000
            event = stops.get(10)
            if event is None:
                raise RuntimeError("the source never reported STOP")
            return (resumed - event_time(event)) * 1000, total
    finally:
        target.execute("quit")
        close_monitor(twin / "qmp.sock")
        source.execute("cont")  # the source takes over again: it is the one Corral moves
        close_monitor(run_dir / "qmp.sock")
        subprocess.run(["rm", "-rf", str(twin)], check=False)
        host.start()


def corral_migrate(src: Host, dst: Host, name: str) -> dict[str, float]:
    said = src.cli("migrate", name, dst.name, "--downtime", "100", check=True)
    record = json.loads(src.cli("migration", "list", "-f", "json", check=True).stdout)[0]
    details = record["details"]
    print(f"  {said.stdout.strip()}")
    return {"downtime": float(details["downtime_ms"]), "total": float(details["total_ms"]),
            "qemu": float(details.get("qemu_downtime_ms") or 0)}


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):7.1f}  min {min(values):7.1f}  "
            f"max {max(values):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    template = build_tiny(Path(tempfile.mkdtemp(prefix="bench-tiny-")))
    lab = Lab(template)
    try:
        a, b = lab.start()
        a.cli("create", "vm1", "--type", "vm", "--memory", "256M", "--disk", "512M", "--start",
              check=True)
        _wait_agent(a, "vm1")
        _exec(a, "vm1", f"setsid sh -c '{COUNTER}' >/dev/null 2>&1 </dev/null &")
        raw_down, raw_total, c_down, c_total, c_qemu = [], [], [], [], []
        hosts = (a, b)
        for round_ in range(args.rounds):
            src, dst = hosts[round_ % 2], hosts[(round_ + 1) % 2]
            down, total = raw_migrate(src, "vm1", 100)
            raw_down.append(down)
            raw_total.append(total)
            print(f"round {round_ + 1}: raw QMP downtime {down:.1f} ms, total {total:.0f} ms")
            result = corral_migrate(src, dst, "vm1")
            c_down.append(result["downtime"])
            c_total.append(result["total"])
            c_qemu.append(result["qemu"])
        holder = hosts[args.rounds % 2]
        count = int(_exec(holder, "vm1", "cat /root/count"))
        time.sleep(0.3)
        assert int(_exec(holder, "vm1", "cat /root/count")) > count, "the counter stopped"

        holder.cli("create", "ct1", "--type", "ct", "--disk", "256M", "--start", check=True)
        _exec(holder, "ct1", "dd if=/dev/urandom of=/root/data bs=1M count=16 2>/dev/null")
        ct_down, ct_total = [], []
        order = (holder, b if holder is a else a)
        for round_ in range(max(2, args.rounds // 2)):
            src, dst = order[round_ % 2], order[(round_ + 1) % 2]
            result = corral_migrate(src, dst, "ct1")
            ct_down.append(result["downtime"])
            ct_total.append(result["total"])

        print()
        print(f"VM 256 MiB, tiny guest with a counter, {args.rounds} rounds (ms)")
        print(f"  raw QMP migrate  downtime {summary(raw_down)}")
        print(f"  raw QMP migrate  total    {summary(raw_total)}")
        print(f"  corral migrate   downtime {summary(c_down)}")
        print(f"  corral (QEMU's own downtime) {summary(c_qemu)}")
        print(f"  corral migrate   total    {summary(c_total)}")
        print(f"  corral - raw downtime (medians): "
              f"{statistics.median(c_down) - statistics.median(raw_down):+.1f} ms")
        print(f"CT (no CRIU: pre-copy, stop, final delta, start), {len(ct_down)} rounds (ms)")
        print(f"  corral migrate   downtime {summary(ct_down)}")
        print(f"  corral migrate   total    {summary(ct_total)}")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
