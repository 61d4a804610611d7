"""Migration benchmark: Corral's VM live migration against the same job done by hand with
QMP, and Corral's container migration: by CRIU checkpoint/restore (the default container:
unprivileged; per-phase medians of where its downtime goes)
beside CRIU's own dump + restore time of the same container in the same move, and by the
restart path (disk pre-copy, stop, final delta, start).

Two corralds run in two network namespaces joined by a bridge (tests/system/migration_lab).
The guest (the tiny template, 256 MiB RAM, 512 MiB root disk, no data disks) runs a counter
writing a file 20 times a second. Each round moves it from the host that has it.

* Corral: ``migrate`` through the source corrald's API (downtime limit 100 ms): reserve on
  the target (empty disk, QEMU ``-incoming defer -S``, NBD export), NBD mirror of the disk,
  RAM pre-copy, mirror cancelled, NBD node deleted, commit over HTTPS (export dropped,
  ``cont``), then the source cleaned up.
* raw: the same job by hand, from the same host pair: an empty disk file of the same length
  in the target host's state directory, a target QEMU started in the target corrald's
  namespaces with the source's very command line (its paths moved) plus
  ``-incoming defer -S``, ``nbd-server-start`` + a writable ``block-export-add`` of its root
  disk on the target host's address, ``migrate-incoming``; on the source the same capability
  (``events``) and parameters (downtime limit, unlimited bandwidth), ``blockdev-add`` of the
  export, ``blockdev-mirror`` (sync=full, write-blocking) until READY, ``migrate`` until
  completed, ``block-job-cancel`` until the job is gone, ``blockdev-del``; on the target
  ``block-export-del``, ``nbd-server-stop``, ``cont``. Then (untimed) the target is quit and
  the source resumed: it stays the one Corral moves. The source host's corrald is stopped
  for the raw round (QEMU's one monitor is then free for this script) and started again
  after, its monitor session opened again by a ``stats`` call, and the bench waits until it
  is idle again; none of it is timed. (Code a
  fresh corrald imports lazily on its first outgoing migration is still cold in the Corral
  round after a raw one: at most a few ms, in the total, not in the downtime.)
* Both: downtime = the target's RESUME event - the source's STOP event (QEMU's timestamps;
  Corral records its target's RESUME since this bench); total = from just before the first
  step (the API request / creating the target's disk) to that RESUME. Corral's own
  ``total_ms`` (to the end of its clean-up on the source) is shown as an extra row.
* TLS: Corral's NBD and RAM streams are TLS (``tls-creds-x509`` from the hosts' pinned
  certificates, drivers/qemu/tlscreds.py); the raw side uses the same credentials objects
  and parameters (like with like: the ratio is Corral's own cost). Each raw round also
  moves the VM by hand over plain TCP (the two raw moves in alternating order): the extra
  rows "raw, plain TCP" and "TLS cost" (raw TLS / raw plain) are what the encryption costs.

* CT checkpoint/restore: Corral's downtime (dump started on the source -> restored on the
  target) against the raw ``criu dump`` + ``criu restore`` of the same container in that same
  move, as CRIU's own logs time them (the last timestamp of dump.log and restore.log): what
  Corral adds is LXC (``lxc-checkpoint``), waiting for the stopped root to be released, the
  final disk delta, sending the dump, and the HTTPS round trips. The container runs a
  counter (setsid: a process in an exec's session cannot be dumped).

A warm-up round of both sides is discarded; then the rounds alternate which side goes first
(bench/common.py). Run as root: ``.venv/bin/python bench/migrate.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Samples, Table, accelerator, conditions, paired_rounds

from corral.client import migration
from corral.drivers.migration import StreamTls
from corral.drivers.qemu.tlscreds import CREDS_ID, write_creds
from corral.host.tls import cert_name
from corral.templates.builders.tiny import build_tiny
from corral.wire.migration import MigrateRequest
from tests.system.migration_lab import Host, Lab

COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /root/count; sleep 0.05; done")
DOWNTIME_MS = 100
UNLIMITED = 1 << 40  # Corral's max-bandwidth when no limit is asked for


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


def event_time(event: dict[str, Any]) -> float:
    stamp = event["timestamp"]
    return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6


class Qmp:
    """A plain synchronous QMP client; events kept in order until waited for."""

    def __init__(self, path: Path) -> None:
        self.mon = QEMUMonitorProtocol(str(path))
        deadline = time.monotonic() + 20
        while True:
            try:
                self.mon.connect()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.mon.settimeout(30)

    def __call__(self, command: str, **args: Any) -> Any:
        return self.mon.cmd(command, **args)

    def wait(self, name: str, timeout: float = 120,
             match: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.mon.pull_event(wait=left)
            if event is not None and event["event"] == name and match(event):
                return dict(event)
        raise RuntimeError(f"no {name} event within {timeout} s")

    def close(self) -> None:
        self.mon.close()


def _qemu(host: Host, name: str) -> tuple[int, list[str], Path, Path]:
    """The running QEMU's pid, command line, instance directory and root disk (a path in
    its corrald's mount namespace: the pools are mounted there)."""
    info = host.instances()[name]
    directory = host.state_dir / "instances" / str(info["id"])
    pid = int((directory / "run" / "qemu.pid").read_text())
    argv = [a.decode() for a in
            Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    drive = next(a for a in argv if a.startswith("id=root,file="))
    disk = Path(drive.removeprefix("id=root,file=").split(",format=")[0].replace(",,", ","))
    return pid, argv, directory, disk


def _tls(own: Host, peer: Host) -> StreamTls:
    """``own``'s identity with ``peer``'s certificate as the only CA (as Corral does)."""
    pem = (peer.state_dir / "tls" / "cert.pem").read_text()
    tls_dir = own.state_dir / "tls"
    return StreamTls(tls_dir / "cert.pem", tls_dir / "key.pem", pem, cert_name(pem))


def _add_creds(qmp: Qmp, run: Path, tls: StreamTls, endpoint: str) -> None:
    qmp("object-add", **{"qom-type": "tls-creds-x509", "id": CREDS_ID,
                         "dir": str(write_creds(run, tls, endpoint)), "endpoint": endpoint,
                         "verify-peer": True, "sanity-check": False})


def raw_both(src: Host, dst: Host, name: str, tls_first: bool) -> dict[str, float]:
    """The raw move with TLS (as Corral) and over plain TCP, in the order given."""
    got: dict[str, float] = {}
    for tls in ((True, False) if tls_first else (False, True)):
        one = raw_migrate(src, dst, name, tls)
        got.update(one if tls else {f"plain_{k}": v for k, v in one.items()})
    return got


def raw_migrate(src: Host, dst: Host, name: str, tls: bool = True) -> dict[str, float]:
    """The same live migration by hand (module docstring); downtime and total in seconds."""
    pid, argv, directory, disk = _qemu(src, name)
    assert dst.process is not None
    dst_ns = f"/proc/{dst.process.pid}/root"
    twin = Path(tempfile.mkdtemp(prefix="raw-twin-", dir=dst.state_dir))
    twin.chmod(0o711)
    (twin / "run").mkdir()
    # the target's disk where Corral's target puts it: the target host's default pool
    twin_disk = dst.state_dir / "pools" / "default" / f"{twin.name}.img"
    if "-incoming" in argv:  # it arrived by a migration itself: drop `-incoming defer -S`
        i = argv.index("-incoming")
        argv = argv[:i] + [a for a in argv[i + 2:] if a != "-S"]
    target_argv = [a.replace(str(disk), str(twin_disk)).replace(f"{directory}/", f"{twin}/")
                   for a in argv] + ["-incoming", "defer", "-S"]
    size = os.stat(f"/proc/{pid}/root{disk}").st_size
    src.stop()  # QEMU's one monitor: corrald's while it runs
    source = Qmp(directory / "run" / "qmp.sock")
    target: Qmp | None = None
    try:
        nbd, mig = 10809, 10810
        started = time.time()
        with open(f"{dst_ns}{twin_disk}", "xb") as f:
            f.truncate(size)
        subprocess.run(["nsenter", "-t", str(dst.process.pid), "-m", "-n", *target_argv],
                       check=True, timeout=60, capture_output=True)
        target = Qmp(twin / "run" / "qmp.sock")
        server: dict[str, Any] = {}
        client: dict[str, Any] = {}
        if tls:
            _add_creds(target, twin / "run", _tls(dst, src), "server")
            server = {"tls-creds": CREDS_ID}
            target("migrate-set-parameters", **server)
            _add_creds(source, directory / "run", _tls(src, dst), "client")
            client = {"tls-creds": CREDS_ID, "tls-hostname": _tls(src, dst).peer_name}
        target("nbd-server-start", addr={"type": "inet", "data": {
            "host": dst.address, "port": str(nbd)}}, **server)
        node = next(d["inserted"]["node-name"] for d in target("query-block")
                    if d["device"] == "root")
        target("block-export-add", type="nbd", id="raw-export", **{"node-name": node},
               name="root", writable=True)
        target("migrate-incoming", uri=f"tcp:{dst.address}:{mig}")

        source("migrate-set-capabilities", capabilities=[{"capability": "events",
                                                          "state": True}])
        source("blockdev-add", driver="nbd", export="root", **{"node-name": "raw-nbd"},
               server={"type": "inet", "host": dst.address, "port": str(nbd)}, **client)
        source("blockdev-mirror", device="root", target="raw-nbd", sync="full",
               **{"job-id": "raw-mirror", "copy-mode": "write-blocking", "auto-dismiss": True})
        source.wait("BLOCK_JOB_READY")
        source("migrate-set-parameters", **{"downtime-limit": DOWNTIME_MS,
                                            "max-bandwidth": UNLIMITED}, **client)
        source("migrate", uri=f"tcp:{dst.address}:{mig}")
        stopped = event_time(source.wait("STOP"))
        source.wait("MIGRATION", match=lambda e: e["data"]["status"] in (
            "completed", "failed", "cancelled"))
        info = source("query-migrate")
        if info["status"] != "completed":
            raise RuntimeError("the raw migration failed")
        source("block-job-cancel", device="raw-mirror")
        source.wait("BLOCK_JOB_COMPLETED")
        source("blockdev-del", **{"node-name": "raw-nbd"})
        while target("query-status")["status"] == "inmigrate":
            time.sleep(0.002)
        target("block-export-del", id="raw-export", mode="hard")
        target("nbd-server-stop")
        target("cont")
        resumed = event_time(target.wait("RESUME", 5))
        return {"downtime": resumed - stopped, "total": resumed - started,
                "qemu_downtime": float(info.get("downtime", 0)) / 1000}
    finally:
        if target is not None:
            with contextlib.suppress(Exception):  # QEMU hangs up as it quits
                target("quit")
                target.close()
        source("cont")  # the source takes over again: it is the one Corral moves
        if tls:  # as Corral leaves it: no TLS parameters, no credentials
            with contextlib.suppress(Exception):
                source("migrate-set-parameters", **{"tls-creds": "", "tls-hostname": ""})
                source("object-del", id=CREDS_ID)
            shutil.rmtree(directory / "run" / "migrate-tls-client", ignore_errors=True)
        source.close()
        shutil.rmtree(twin, ignore_errors=True)
        Path(f"{dst_ns}{twin_disk}").unlink(missing_ok=True)
        src.start()
        # the restarted corrald opens the VM's monitor lazily: open it now, untimed, so the
        # Corral round that may follow from this host does not pay for it
        src.cli("stats", name, check=True)
        _settle(src)


def _settle(host: Host, quiet: float = 0.05, longest: float = 20.0) -> None:
    """Wait until the restarted corrald has done its start-up work (under ``quiet`` of a CPU
    for half a second): left running, it took CPU from the next Corral round on this 2-CPU
    host (that round's downtime and total doubled in a first run)."""
    assert host.process is not None
    stat = Path(f"/proc/{host.process.pid}/stat")
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime, all threads

    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = cpu()
        time.sleep(0.5)
        if cpu() - before < quiet * 0.5:
            return


def _wait_exec(host: Host, name: str) -> None:
    deadline = time.monotonic() + 60
    while host.cli("exec", name, "--", "true").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} never answered exec")
        time.sleep(0.3)


PHASE = "phase "


def corral_migrate(src: Host, dst: Host, name: str) -> dict[str, float]:
    with src.client() as c:
        started = time.time()
        op = migration.migrate(c, name, MigrateRequest(target=dst.name,
                                                      downtime_ms=DOWNTIME_MS))
        done = c.wait(op.id)
        if done.status != "success":
            raise RuntimeError(f"migrate {name}: {done.error}")
        record = migration.list_migrations(c, 1)[0]
        details = record.details
    if record.path == "precopy" and name == "ctc":
        raise RuntimeError(f"{name} took the restart path: {details.get('why')}")
    got = {"downtime": float(details["downtime_ms"]) / 1000,
           "own_total": float(details["total_ms"]) / 1000}
    if details.get("criu_dump_ms") is not None and details.get("criu_restore_ms") is not None:
        got["criu"] = (float(details["criu_dump_ms"]) + float(details["criu_restore_ms"])) / 1000
        got[f"{PHASE}CRIU's own dump (its log)"] = float(details["criu_dump_ms"]) / 1000
        got[f"{PHASE}CRIU's own restore (its log)"] = float(details["criu_restore_ms"]) / 1000
    for key, side in (("dump_phases", "dump"), ("quiesce_phases", "disks"),
                      ("restore_phases", "restore")):
        for phase, ms in (details.get(key) or {}).items():
            got[f"{PHASE}{side}: {phase}"] = float(ms) / 1000
    for key, label in (("dump_ms", "dump (source)"), ("send_ms", "final delta + files"),
                       ("files_ms", "  files and dump sent (beside the next two)"),
                       ("settle_ms", "  of which disks made still (read-only/released)"),
                       ("delta_ms", "  of which final disk delta"),
                       ("commit_ms", "restore (target, commit round trip)"),
                       ("commit_wire_ms", "  of which the request's way to the target's handler"),
                       ("commit_resumed_ms", "  of which asked -> resumed (in the downtime)")):
        if details.get(key) is not None:
            got[f"{PHASE}{label}"] = float(details[key]) / 1000
    if details.get("resumed_at"):
        got["total"] = float(details["resumed_at"]) - started
    if details.get("qemu_downtime_ms") is not None:
        got["qemu_downtime"] = float(details["qemu_downtime_ms"]) / 1000
    return got


def _vm_tables(vm: Samples) -> None:
    table = Table("VM live migration (ms; ratio = Corral / raw, > 1: Corral slower)")
    table.add("downtime: source STOP -> target RESUME (QMP)", vm.corral["downtime"],
              vm.raw["downtime"])
    table.add("total: first step -> target RESUME", vm.corral.get("total"),
              vm.raw["total"])
    table.add("  Corral's own total_ms (to the end of its source clean-up)",
              vm.corral["own_total"], None)
    table.add("  QEMU's own 'downtime' (query-migrate)", vm.corral.get("qemu_downtime"),
              vm.raw.get("qemu_downtime"))
    print(table.render())
    cost = Table("TLS cost, raw moves only (ms; ratio = raw TLS / raw plain TCP)")
    cost.add("downtime: TLS vs plain TCP", vm.raw["downtime"], vm.raw["plain_downtime"])
    cost.add("total: TLS vs plain TCP", vm.raw["total"], vm.raw["plain_total"])
    print(cost.render())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ct-only", action="store_true", help="only the container rows")
    parser.add_argument("--vm-only", action="store_true", help="only the VM rows")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    template = build_tiny(Path(tempfile.mkdtemp(prefix="bench-tiny-")))
    lab = Lab(template)
    try:
        a, b = lab.start()
        where: dict[str, Host] = {}

        def other(host: Host) -> Host:
            return b if host is a else a

        vm = None
        accel = "n/a (containers only)"
        holder = a
        if not args.ct_only:
            a.cli("create", "vm1", "--type", "vm", "--memory", "256M", "--disk", "512M", "--start",
                  check=True)
            _wait_agent(a, "vm1")
            _exec(a, "vm1", f"setsid sh -c '{COUNTER}' >/dev/null 2>&1 </dev/null &")
            accel = accelerator(_qemu(a, "vm1")[1])
            where["vm1"] = a

            def corral() -> dict[str, float]:
                src = where["vm1"]
                got = corral_migrate(src, other(src), "vm1")
                where["vm1"] = other(src)
                return got

            raw_rounds = [0]

            def raw() -> dict[str, float]:
                src = where["vm1"]
                raw_rounds[0] += 1
                return raw_both(src, other(src), "vm1", tls_first=raw_rounds[0] % 2 == 1)

            vm = paired_rounds(args.runs, corral, raw, label="VM ")
            holder = where["vm1"]
            count = int(_exec(holder, "vm1", "cat /root/count"))
            time.sleep(0.3)
            assert int(_exec(holder, "vm1", "cat /root/count")) > count, "the counter stopped"

        if args.vm_only and vm is not None:
            print()
            print(conditions(args.runs, accel, "VM only: tiny guest, 256 MiB RAM, 512 MiB "
                             "disk; NBD and RAM streams over TLS (raw: the same TLS; plus a "
                             "raw plain-TCP move)"))
            _vm_tables(vm)
            return
        holder.cli("create", "ctc", "--type", "ct", "--disk", "256M", "--start", check=True)
        _wait_exec(holder, "ctc")
        _exec(holder, "ctc", f"setsid sh -c '{COUNTER}' >/dev/null 2>&1 </dev/null &")
        where["ctc"] = holder
        cr: dict[str, list[float]] = {}
        for i in range(1 + args.runs):
            src = where["ctc"]
            got = corral_migrate(src, other(src), "ctc")
            where["ctc"] = other(src)
            if i == 0:
                continue  # warm-up
            for key, value in got.items():
                cr.setdefault(key, []).append(value)
        holder = where["ctc"]
        count = int(_exec(holder, "ctc", "cat /root/count"))
        time.sleep(0.3)
        assert int(_exec(holder, "ctc", "cat /root/count")) > count, "the CT counter stopped"
        holder.cli("delete", "--force", "ctc", check=True)

        holder.cli("create", "ct1", "--type", "ct", "--disk", "256M", "--start", check=True)
        _exec(holder, "ct1", "dd if=/dev/urandom of=/root/data bs=1M count=16 2>/dev/null")
        where["ct1"] = holder
        ct: dict[str, list[float]] = {}
        for _ in range(max(2, args.runs // 2)):
            src = where["ct1"]
            for key, value in corral_migrate(src, other(src), "ct1").items():
                ct.setdefault(key, []).append(value)
            where["ct1"] = other(src)

        print()
        what = ("CTs only (raw CT side: from the same moves, not alternated)" if args.ct_only
                else "VM: tiny guest, 256 MiB RAM, 512 MiB disk, a counter writing 20x/s; "
                f"downtime limit {DOWNTIME_MS} ms")
        print(conditions(args.runs, accel, what + "; two netns joined by a bridge; NBD and "
                         "RAM streams over TLS (raw: the same TLS; plus a raw plain-TCP move)"))
        if vm is not None:
            _vm_tables(vm)
        crs = Table(f"CT migration by CRIU checkpoint/restore (default busybox CT, a "
                    f"counter), {len(cr['downtime'])} rounds (ms; raw = CRIU's own dump + "
                    "restore of the same move)")
        crs.add("downtime (dump started -> restored on the target)", cr["downtime"],
                cr.get("criu"))
        crs.add("total (Corral's total_ms)", cr["own_total"], None)
        for key in [k for k in cr if k.startswith(PHASE)]:
            crs.add("  " + key[len(PHASE):], cr[key], None)
        print(crs.render())
        cts = Table(f"CT migration, no CRIU (pre-copy, stop, delta, start; 16 MiB written), "
                    f"{len(ct['downtime'])} rounds, Corral only (ms)")
        cts.add("downtime (stop on the source -> running on the target)", ct["downtime"], None)
        cts.add("total (Corral's total_ms)", ct["own_total"], None)
        print(cts.render())
    finally:
        lab.close()


if __name__ == "__main__":
    main()
