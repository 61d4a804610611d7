"""The `corral` command as an operator types it, against a real corrald (fake driver)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.integration.conftest import Daemon


def test_operator_tour(daemon: Daemon) -> None:
    run = daemon.cli
    made = run("create", "web1", "--type", "ct", "--template", "tiny", "--cpus", "1",
               "--memory", "256M", "--disk", "1G", check=True)
    assert "Created ct web1 (id 101)" in made.stdout
    run("create", "db1", "--type", "vm", "--template", "tiny", "--cpus", "2", "--memory",
        "512M", "--disk", "2G", check=True)
    run("start", "web1", "db1", check=True)
    table = run("list", check=True).stdout
    for word in ("ID", "NAME", "TYPE", "STATE", "web1", "db1", "running", "256M", "2G",
                 "test-node"):
        assert word in table
    listed = yaml.safe_load(run("list", "--format", "yaml", check=True).stdout)
    assert {i["name"]: i["state"] for i in listed} == {"web1": "running", "db1": "running"}
    info = json.loads(run("info", "db1", "--format", "json", check=True).stdout)
    assert info["resources"]["cpus"] == 2 and info["type"] == "vm"
    assert "102" in run("info", "102", check=True).stdout
    uname = run("exec", "web1", "--", "echo", "-n", "inside")
    assert (uname.returncode, uname.stdout) == (0, "inside")
    failed = run("exec", "db1", "--", "sh", "-c", "echo err >&2; exit 7")
    assert (failed.returncode, failed.stderr) == (7, "err\n")
    piped = run("exec", "web1", "--stdin", "--", "cat", stdin=b"fed in")
    assert piped.stdout == "fed in"
    run("suspend", "db1", check=True)
    run("resume", "db1", check=True)
    run("restart", "web1", check=True)
    run("stop", "db1", "--timeout", "5", check=True)
    run("stop", "web1", "--force", check=True)
    ops = json.loads(run("operation", "list", "--format", "json", check=True).stdout)
    # `start web1 db1` (two names) is one bulk operation; its items are start operations
    assert {"create", "bulk-start", "stop", "suspend", "resume", "restart"} <= {
        o["action"] for o in ops}
    shown = json.loads(run("operation", "show", ops[0]["id"], "--format", "json").stdout)
    assert shown["status"] == "success"
    waited = run("operation", "wait", ops[0]["id"])
    assert waited.returncode == 0
    assert waited.stdout.strip() == f"Operation {ops[0]['id'][:8]} (stop web1) succeeded"
    run("delete", "web1", "db1", check=True)
    assert json.loads(run("list", "--format", "json", check=True).stdout) == []


def test_console_through_cli(daemon: Daemon) -> None:
    daemon.cli("create", "c1", "--type", "ct", "--start", check=True)
    out = daemon.cli("console", "c1", "--linger", "1", stdin=b"typed line\n")
    assert out.returncode == 0
    assert "typed line" in out.stdout
    assert "corral-guest-ready" in daemon.cli("console", "c1", "--log").stdout


def test_errors_exit_non_zero_with_message(daemon: Daemon) -> None:
    cases = [
        (["create", "Bad_Name", "--type", "ct"], "DNS label"),
        (["create", "ok", "--type", "ct", "--memory", "256"], "no unit"),
        (["create", "ok", "--type", "ct", "--cpus", "0"], "at least 1"),
        (["create", "ok", "--type", "ct", "--template", "nope"], "unknown template 'nope'"),
        (["start", "ghost"], "no instance 'ghost'"),
        (["info", "ghost"], "no instance 'ghost'"),
        (["operation", "show", "nope"], "no operation"),
        (["template", "build", "nope"], "no builder for template 'nope'"),
    ]
    for args, says in cases:
        proc = daemon.cli(*args)
        assert proc.returncode != 0, args
        assert says in proc.stderr.replace("\n", " "), (args, proc.stderr)
    daemon.cli("create", "dup", "--type", "ct", "--start", check=True)
    dup = daemon.cli("create", "dup", "--type", "vm")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    running = daemon.cli("start", "dup")
    assert running.returncode != 0 and "is running; use restart" in running.stderr
    refuse = daemon.cli("delete", "dup")
    assert refuse.returncode != 0 and "--force" in refuse.stderr
    assert daemon.cli("delete", "dup", "--force").returncode == 0
    assert json.loads(daemon.cli("list", "--format", "json").stdout) == []


def test_unreachable_daemon_is_a_clear_error(daemon: Daemon, tmp_path: object) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, CORRAL_SOCKET="/nonexistent/corral.sock")
    proc = subprocess.run([sys.executable, "-m", "corral.cli.main", "list"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "cannot reach corrald" in proc.stderr


def test_host_info(daemon: Daemon) -> None:
    info = json.loads(daemon.cli("host", "info", "--format", "json", check=True).stdout)
    assert info["node"] == "test-node"
    assert "user_namespaces" in info["features"]
    assert "FEATURE" in daemon.cli("host", "info", check=True).stdout
    templates = json.loads(daemon.cli("template", "list", "--format", "json").stdout)
    assert [t["name"] for t in templates] == ["tiny"]


def test_silent_commands_confirm_success(daemon: Daemon, tmp_path: Path) -> None:
    run = daemon.cli
    run("create", "web1", "--type", "ct", "--template", "tiny", check=True)
    run("network", "class", "set", "local=10.0.0.0/8", check=True)
    said = run("bandwidth", "set", "web1", "--class", "local", "--rate", "10mbit",
               "--ceil", "50mbit", check=True).stdout
    assert said.strip() == "Bandwidth for web1 class local: rate 10mbit, ceil 50mbit"
    said = run("bandwidth", "set", "web1", "--class", "local", "--rate", "5mbit",
               "--direction", "in", check=True).stdout
    assert said.strip() == "Bandwidth for web1 class local (in): rate 5mbit, ceil 5mbit"
    run("bandwidth", "clear", "web1", check=True)
    said = run("network", "class", "delete", "local", check=True).stdout
    assert said.strip() == "Class local deleted"
    run("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    said = run("backup", "target", "remove", "nas", check=True).stdout
    assert said.strip() == "Target nas removed"


def test_info_table_shows_set_resource_limits(daemon: Daemon) -> None:
    run = daemon.cli
    run("create", "web1", "--type", "ct", "--template", "tiny", "--memory", "256M",
        check=True)
    plain = run("info", "web1", check=True).stdout
    for key in ("cpu_limit", "cpu_shares", "memory_min", "io_read_bps", "io_iops", "pids"):
        assert key not in plain
    run("set", "web1", "cpu_limit=50", "cpu_shares=512", "memory_min=128M",
        "io_read_bps=10M", "io_iops=200", "pids=100", check=True)
    rows = {line.split()[0]: " ".join(line.split()[1:])
            for line in run("info", "web1", check=True).stdout.splitlines() if line.strip()}
    assert rows["cpu_limit"] == "50% of one CPU"
    assert rows["cpu_shares"] == "512"
    assert rows["memory_min"] == "128M"
    assert rows["io_read_bps"] == "10M/s"
    assert rows["io_iops"] == "200/s"
    assert rows["pids"] == "100"
    assert "io_write_bps" not in rows and "swap" not in rows
