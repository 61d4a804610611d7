"""What an idle tiny VM costs the host, per variant, side by side in one run: CPU (% of one
CPU, from each QEMU's /proc/<pid>/stat over a window) and RSS, after the guests settled.

Variants: ``tiny`` built from this checkout; ``tinyold``, built the same way but with the
guest agent of ``--old-agent-rev`` (git revision; default: main); and, per ``--kernel-words``
value, ``tiny`` with those words added to the guest kernel's command line -- so a change is
measured against what it replaces on the same host at the same moment.

Run as root: .venv/bin/python bench/vm_idle.py [--vms 2] [--settle 45] [--window 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.templates.builders import tiny
from corral.wire.models import CreateRequest
from tests.integration.conftest import (
    daemon_env,
    remove_empty_cgroups,
    remove_nft_tables,
    start_daemon,
    stop_daemon,
)

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def build(dest: Path, name: str, agent: bytes | None, words: str = "") -> None:
    """The tiny template into ``dest``; ``agent``: another guest agent script; ``words``:
    added to the kernel command line."""
    real = tiny.guest_file
    if agent is not None:
        tiny.guest_file = lambda n: agent if n == "corral-agent" else real(n)  # type: ignore[assignment]
    try:
        tiny.build_tiny(dest)
    finally:
        tiny.guest_file = real
    meta = json.loads((dest / "metadata.json").read_text())
    meta["name"] = name
    if words:
        meta["vm"]["cmdline"] += " " + words
    (dest / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def switches(pid: int) -> int:
    """Context switches of all the QEMU's threads so far: each wake-up of an idle guest is
    one or more, and unlike CPU % they do not shrink when other work crowds the host."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def rss_parts(pid: int, guest_bytes: int) -> dict[str, float]:
    """RSS (MiB) by what holds it: the guest's RAM (the mapping of the guest's size), TCG's
    translation buffer (anonymous executable mappings: since Corral sizes it, 32 MiB for a
    128 MiB guest), and QEMU itself (its heap, libraries, thread stacks: everything else)."""
    parts = {"guest": 0.0, "tcg": 0.0, "qemu": 0.0}
    size = 0
    perms = ""
    named = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            size, perms, named = end - start, fields[1], len(fields) > 5
        elif fields[0] == "Rss:":
            mib = int(fields[1]) / 1024
            if size == guest_bytes:
                parts["guest"] += mib
            elif "x" in perms and not named:
                parts["tcg"] += mib
            else:
                parts["qemu"] += mib
    return parts


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ksm_report(pids: list[int], seconds: float) -> None:
    from corral.host import ksm

    found = ksm.status()
    if not found.available:
        print(f"KSM: {found.detail}")
        return
    previous = (ksm.KSM / "run").read_text().strip()
    used = sum(rss_mib(p) for p in pids)
    ksm.set_running(True)
    try:
        time.sleep(seconds)
        after = ksm.status()
        print(f"KSM after {seconds:.0f} s on {len(pids)} VMs: {after.saved_bytes / 2**20:.0f} MiB "
              f"saved ({after.pages_sharing} pages sharing {after.pages_shared}); their RSS "
              f"{used:.0f} -> {sum(rss_mib(p) for p in pids):.0f} MiB (RSS counts a merged "
              f"page in each VM: the host's saving is the first figure)")
    finally:
        (ksm.KSM / "run").write_text(previous)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=2, help="VMs per variant")
    parser.add_argument("--settle", type=float, default=45.0,
                        help="seconds after the last start before measuring")
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--old-agent-rev", default="main")
    parser.add_argument("--ksm", type=float, default=0.0,
                        help="after measuring: KSM on for this many seconds, then what it "
                             "saved (the host's previous KSM setting is put back)")
    parser.add_argument("--kernel-words", action="append", default=[],
                        help="a variant with these kernel command line words (repeatable)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    old_agent = subprocess.run(
        ["git", "-C", str(ROOT), "show",
         f"{args.old_agent_rev}:src/corral/templates/guest/corral-agent"],
        check=True, capture_output=True).stdout
    root = Path(tempfile.mkdtemp(prefix="corral-bench-vmidle-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    labels = {"tiny": "this tree", "tinyold": f"{args.old_agent_rev} agent"}
    build(state / "templates" / "tiny", "tiny", None)
    build(state / "templates" / "tinyold", "tinyold", old_agent)
    for i, words in enumerate(args.kernel_words):
        labels[f"tinyk{i}"] = words
        build(state / "templates" / f"tinyk{i}", f"tinyk{i}", None, words)
    daemon = start_daemon(state, drivers="real")
    rows: list[tuple[str, float, float, float, float]] = []
    try:
        with daemon.client() as c:
            c.set_policy({"cpu": "10000", "memory": "100", "disk": "100"})
            names = {t: [f"idle-{t}-{i}" for i in range(args.vms)] for t in labels}
            for template, group in names.items():
                for name in group:
                    op = c.create_instance(CreateRequest(
                        name=name, type="vm", template=template, memory="128M", cpus=1,
                        disk="64M", start=True))
                    done = c.wait(op.id, timeout=300)
                    if done.status != "success":
                        raise RuntimeError(f"{name}: {done.error}")
            time.sleep(args.settle)
            pids = {i.name: i.pid for i in c.list_instances() if i.pid}
            before = {n: cpu_seconds(p) for n, p in pids.items()}
            woke = {n: switches(p) for n, p in pids.items()}
            began = time.monotonic()
            time.sleep(args.window)
            took = time.monotonic() - began
            for template, group in names.items():
                cpu = [(cpu_seconds(pids[n]) - before[n]) / took * 100 for n in group]
                rss = [rss_mib(pids[n]) for n in group]
                wakes = [(switches(pids[n]) - woke[n]) / took for n in group]
                rows.append((template, sum(cpu) / len(cpu), max(cpu), sum(wakes) / len(wakes),
                             sum(rss) / len(rss)))
                parts = [rss_parts(pids[n], 128 << 20) for n in group]
                print(f"{labels[template]}: RSS MiB per VM: " + ", ".join(
                    f"{k} {sum(p[k] for p in parts) / len(parts):.0f}" for k in parts[0]))
            if args.ksm:
                ksm_report(list(pids.values()), args.ksm)
    finally:
        try:
            with daemon.client() as c:
                for op_id in [c.delete_instance(i.name, force=True).id
                              for i in c.list_instances()]:
                    c.wait(op_id, timeout=300)
        finally:
            stop_daemon(daemon)
            remove_nft_tables(state)  # its guests are gone: so go its tables
            remove_empty_cgroups(daemon_env(state)["CORRAL_CGROUP_ROOT"])
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'variant':>36}  {'CPU % mean':>10}  {'CPU % max':>10}  {'switches/s':>10}  "
          f"{'RSS MiB':>8}")
    for template, mean, top, wake, rss_mean in rows:
        print(f"{labels[template]:>36}  {mean:>10.1f}  {top:>10.1f}  {wake:>10.0f}  "
              f"{rss_mean:>8.0f}")
    print(f"(host load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
