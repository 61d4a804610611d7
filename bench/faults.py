"""The VMs' fault matrix (each case costs 25-40 s here, so it is not in the suite; the
containers' is, tests/system/test_faults_real.py): corrald kill -9'd at each fault point of
create/start/stop/delete/snapshot/revert/clone, disk add/resize, convert, backup, restore and
a memory snapshot with a VM, restarted, checked (state the CLI explains, guests still
running, no orphan), the action retried. Then kill -9 of the QEMU process (shown stopped
with a crash reason, starts again). ``--kind ct``: the containers' full matrix (the suite
runs one point per operation added for issue 20); ``--kind migrate``: a container's
migration with either side killed at each of its points (the suite runs their fake-driver
form, tests/integration/test_migration.py). Prints a
table: point, survived, seconds.

    .venv/bin/python bench/faults.py [--kind vm|ct|migrate] [--only POINT ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest

from corral.templates.builders.tiny import build_tiny
from tests.integration.conftest import delete_everything, start_daemon, stop_daemon, wait_until
from tests.system.faults_migrate import POINTS, run_migrate_case, skip_reason
from tests.system.orphans import Baseline, orphans
from tests.system.test_faults_real import KINDS, assert_crashed, cases, run_case


def kill_qemu(state: Path) -> None:
    """kill -9 of a running VM's QEMU: shown stopped, starts again, nothing orphaned."""
    baseline = Baseline()
    daemon = start_daemon(state, drivers="real")
    try:
        daemon.cli("create", "f1", "--type", "vm", "--template", "tiny", *KINDS["vm"],
                   check=True)
        daemon.cli("start", "f1", check=True)
        pids = [line.split()[0] for line in os.popen("ps -eo pid=,args=").read().splitlines()
                if "qemu-system" in line and str(state) in line]
        assert pids, "no QEMU process"
        os.kill(int(pids[0]), signal.SIGKILL)

        def state_of() -> str:
            listed = json.loads(daemon.cli("list", "--format", "json").stdout)
            return str(listed[0]["state"])

        assert wait_until(lambda: state_of() != "running", 30), state_of()
        assert_crashed(daemon, "f1", "QEMU (pid")
        daemon.cli("start", "f1", check=True)
        assert daemon.cli("exec", "f1", "--", "true").returncode == 0
        daemon.cli("delete", "--force", "f1", check=True)
        assert orphans(state, baseline) == []
    finally:
        stop_daemon(daemon)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="vm", choices=["vm", "ct", "migrate"])
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    if args.kind == "migrate" and skip_reason():
        print(f"cannot run here: {skip_reason()}")
        return 1
    made = Path(tempfile.mkdtemp(prefix="corral-bench-faults-tpl-"))
    template = build_tiny(made)
    state = Path(tempfile.mkdtemp(prefix="corral-bench-faults-"))
    state.chmod(0o711)
    shutil.copytree(template.directory, state / "templates" / "tiny")
    rows, failed = [], 0
    monkeypatch = pytest.MonkeyPatch()
    checks: list[tuple[str, Callable[[], None]]] = [
        (c.point, functools.partial(run_case, state, c, monkeypatch))
        for c in (cases(args.kind) if args.kind != "migrate" else [])
        if args.only is None or c.point in args.only]
    checks += [(point, functools.partial(run_migrate_case, template, point))
               for point in (POINTS if args.kind == "migrate" else ())
               if args.only is None or point in args.only]
    if args.kind == "vm" and (args.only is None or "qemu.kill" in args.only):
        checks.append(("qemu.kill", functools.partial(kill_qemu, state)))
    try:
        for point, check in checks:
            began = time.monotonic()
            try:
                check()
                outcome = "survived"
            except Exception as exc:  # a finding: the table says which and why
                traceback.print_exc()
                outcome, failed = f"FAILED: {str(exc)[:150]!r}", failed + 1
                if args.kind != "migrate":  # (a migration case's lab cleans itself)
                    try:
                        delete_everything(state)  # the next case starts from nothing
                    except Exception:
                        traceback.print_exc()
            rows.append((point, outcome, time.monotonic() - began))
            print(f"{point}: {outcome} ({rows[-1][2]:.0f} s)", flush=True)
    finally:
        monkeypatch.undo()
        if args.kind != "migrate":
            delete_everything(state)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(made, ignore_errors=True)  # (its parent is TMPDIR: other runs' too)
    print(f"\n| {args.kind} fault point (kill -9) | result | s |\n|---|---|---:|")
    for point, outcome, seconds in rows:
        print(f"| {point} | {outcome} | {seconds:.0f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
