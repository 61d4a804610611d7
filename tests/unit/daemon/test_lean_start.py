"""An idle corrald imports only what serving the local socket needs (issue 19: its idle RSS
toward 80 MiB): Alembic/SQLAlchemy never (a pending migration runs in a child process),
httpx only to forward in a cluster, the web console only with --listen,
argon2/cryptography/zstandard/boto3 with the first password or backup.

The daemon runs for real (fake drivers) in a child interpreter; a thread there waits for its
socket, prints the loaded modules and stops it with SIGTERM, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("alembic", "sqlalchemy", "httpx", "jinja2", "argon2", "cryptography", "zstandard",
         "boto3", "botocore", "schemathesis", "corral.web", "rich", "pygments")

CHILD = """
import json, os, signal, sys, threading, time
from pathlib import Path

from corral.daemon.main import main

socket = Path(sys.argv[1])

def report() -> None:
    deadline = time.monotonic() + 120
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the first moments of serving (the history sampler's first tick)
    print(json.dumps(sorted(sys.modules)), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report, daemon=True).start()
main(["--drivers", "fake", "--state-dir", sys.argv[2], "--socket", sys.argv[1],
      "--log-to", "stderr", "--history-interval", "1"])
"""


def _loaded(tmp_path: Path) -> set[str]:
    env = {**os.environ, "CORRAL_CGROUP_ROOT": f"lean-{os.getpid()}"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "sock"), str(tmp_path / "state")],
        capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_an_idle_daemon_loads_no_heavy_module_it_does_not_use(tmp_path: Path) -> None:
    first = _loaded(tmp_path)  # a new state file: the schema is made (by a child process)
    assert _heavy(first) == []
    assert (tmp_path / "state" / "corral.db").is_file()
    again = _loaded(tmp_path)  # the same file at the head revision: nothing pending
    assert _heavy(again) == []
    assert "corral.services.core" in again and "uvicorn" in again
    assert _heavy(set(sys.modules) | {"alembic"}) != []  # the check sees one when it is there
