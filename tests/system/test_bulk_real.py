"""Bulk exec over a few real containers, one item failing (a real corrald, real LXC)."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Daemon
from tests.system.fixtures_template import tiny_template
from tests.system.test_daemon_real import real_daemon

pytestmark = pytest.mark.system
__all__ = ["real_daemon", "tiny_template"]


def test_bulk_exec_over_real_containers_with_one_failing(real_daemon: Daemon) -> None:
    run = real_daemon.cli
    made = run("create", "bx-{1..3}", "--type", "ct", "--template", "tiny", "--disk", "64M",
               "--start", "--label", "role=bx", "--parallel", "3")
    assert made.returncode == 0, made.stdout + made.stderr
    # a file only inside bx-2: the command runs in each container, not on the host
    run("exec", "bx-2", "--", "touch", "/tmp/not-here", check=True)
    out = run("exec", "--selector", "role=bx", "--", "sh", "-c",
              "test ! -e /tmp/not-here || { echo refused >&2; exit 3; }; hostname")
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.stdout.splitlines()[1:]}
    assert rows["bx-1"] == ["ok", "exit 0: bx-1"]
    assert rows["bx-2"] == ["failed", "exit 3: refused"]
    assert rows["bx-3"] == ["ok", "exit 0: bx-3"]
    assert "2 ok, 1 failed of 3" in out.stderr
    gone = run("delete", "--selector", "role=bx", "--force", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert json.loads(run("list", "-f", "json", check=True).stdout) == []
