"""`corral capacity` for this host from live instances: a tiny CT and a tiny VM started
through a real corrald, left to idle, then the business case measured on them (their
overhead: cgroup charge above the guest's memory, CPU used while idle).

Prints the table (and writes the JSON and an SVG chart to a folder it prints); deletes the
instances and the state afterwards.

Run as root: .venv/bin/python bench/capacity.py [--idle 20] [-- <corral capacity options>]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.templates.builders.tiny import build_tiny
from corral.wire.models import CreateRequest
from tests.integration.conftest import real_daemon_in

READY = b"corral-guest-ready"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=20,
                        help="seconds the guests idle before measuring (after the VM's boot)")
    parser.add_argument("--ct-memory", default="64M")
    parser.add_argument("--vm-memory", default="128M")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("options", nargs="*", help="passed to `corral capacity`")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    out = args.out or Path(tempfile.mkdtemp(prefix="corral-capacity-"))
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="corral-bench-capacity-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    build_tiny(state / "templates" / "tiny")
    try:
        with real_daemon_in(state) as daemon, daemon.client() as c:
            for name, kind, memory in (("cap-ct", "ct", args.ct_memory),
                                       ("cap-vm", "vm", args.vm_memory)):
                op = c.create_instance(CreateRequest(name=name, type=kind, template="tiny",
                                                     memory=memory, disk="64M", start=True))
                done = c.wait(op.id, timeout=300)
                if done.status != "success":
                    raise RuntimeError(f"create {name}: {done.error}")
            vm = c.get_instance("cap-vm")
            log = daemon.state_dir / "instances" / str(vm.id) / "console.log"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and READY not in log.read_bytes():
                time.sleep(0.2)
            time.sleep(args.idle)
            json_file, chart = out / "capacity.json", out / "capacity.svg"
            table = daemon.cli("capacity", "--chart", str(chart), *args.options, check=True)
            json_file.write_text(daemon.cli("capacity", "--format", "json", *args.options,
                                            check=True).stdout)
            print(table.stdout, end="")
            print(f"JSON: {json_file}\nchart: {chart}")
            print(f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
