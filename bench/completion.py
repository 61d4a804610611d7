"""Shell completion latency: one Tab press, ``corral __complete`` vs a bare ``python -c pass``.

What a Tab costs is a whole process: the interpreter's start, the completion module, the
command tree and (for names) one request to corrald. The raw side is the floor any Python
completer pays: ``python -c pass`` with the same interpreter. Rows:

* a command name (``corral st<Tab>``): the tree only;
* instance names (``corral start <Tab>``) and snapshot names (``corral snapshot revert web1
  <Tab>``): one request to a corrald (fake driver, its own state dir and socket, with 20
  instances) over its Unix socket;
* for scale, not a completion: ``corral --help`` (the whole Typer CLI imported) against the
  same floor, the cost every Tab would pay if completion went through the CLI.

The budget is 100 ms per Tab (the corral column). Paired rounds, warm-up discarded
(bench/common.py).

Run: .venv/bin/python bench/completion.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Samples, Table, conditions, paired_rounds

from tests.integration.conftest import start_daemon, stop_daemon, write_fake_template

BUDGET = 0.100


def _timed(argv: list[str], env: dict[str, str],
           expect: str | None = None) -> Callable[[], dict[str, float]]:
    def run() -> dict[str, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if expect is not None and expect not in proc.stdout.split():
            raise AssertionError(f"{argv}: {expect!r} not in {proc.stdout!r}")
        return {"s": took, "cpu": cpu}
    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="corral-bench-completion-"))
    write_fake_template(work / "templates")
    daemon = start_daemon(work)
    try:
        daemon.cli("host", "policy", "cpu=100", "memory=100", check=True)
        for i in range(20):
            daemon.cli("create", f"web{i}", "--type", "ct", "--template", "tiny", "--cpus", "1",
                       "--memory", "16M", check=True)
        daemon.cli("snapshot", "create", "web1", "before", check=True)
        env = {**os.environ, "CORRAL_SOCKET": str(daemon.socket)}
        # what pip's `corral` console script runs (no runpy, unlike `python -m`)
        script = ("import re, sys\nfrom corral.cli.entry import main\n"
                  "sys.argv[0] = 'corral'\nsys.exit(main())")
        complete = [python, "-c", script, "__complete", "bash"]
        floor = _timed([python, "-c", "pass"], env)
        cases = {
            "command (corral st<Tab>)": _timed([*complete, "1", "corral", "st"], env, "start"),
            "instance names (corral start <Tab>)":
                _timed([*complete, "2", "corral", "start", ""], env, "web7"),
            "snapshot names (corral snapshot revert web1 <Tab>)":
                _timed([*complete, "4", "corral", "snapshot", "revert", "web1", ""], env,
                       "before"),
            "not a completion: corral --help (whole CLI)":
                _timed([python, "-c", script, "--help"], env),
        }
        table = Table(f"One Tab press vs `python -c pass` (budget {BUDGET * 1000:.0f} ms)")
        for what, measure in cases.items():
            samples = paired_rounds(args.runs, measure, floor, Samples(), label=f"{what}: ")
            table.add(what, samples.corral["s"], samples.raw["s"])
            table.add("  CPU time (user+sys) of it", samples.corral["cpu"], samples.raw["cpu"])
        # `corral` itself: the new entry point (completion check, then the Typer CLI) vs the
        # Typer CLI called directly, as the executable did before -- startup unchanged?
        startup = Table("`corral --version`: entry point (new) vs the Typer CLI directly (before)")
        samples = paired_rounds(
            args.runs, _timed([python, "-c", script, "--version"], env),
            _timed([python, "-c", "import sys; sys.argv[1:] = ['--version']\n"
                    "from corral.cli.main import main; main()"], env),
            Samples(), label="startup: ")
        startup.add("corral --version", samples.corral["s"], samples.raw["s"])
        startup.add("  CPU time (user+sys) of it", samples.corral["cpu"], samples.raw["cpu"])
        print(conditions(args.runs, "n/a (no guest)", "corrald: fake driver, 20 instances"))
        print(table.render())
        print(startup.render())
        over = [what for what, c, _ in table.rows
                if c and "not a completion" not in what and "CPU" not in what
                and sorted(c)[len(c) // 2] > BUDGET]
        if over:
            print(f"over the {BUDGET * 1000:.0f} ms budget: {', '.join(over)}")
            return 1
        return 0
    finally:
        stop_daemon(daemon)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
