"""What the `corral` command prints, for people and for scripts (issue 22): whole names and
ids in tables, one state everywhere, `top` in a pipe, `--format` on every read command,
confirmations, and the smaller readability fixes. A real corrald with the fake driver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corral.client import ApiError
from corral.client.backups import BackupCalls
from tests.integration.conftest import Daemon

LONG = "web-long-name-for-a-customer-who-likes-long-names"  # 50 characters
NARROW = {"COLUMNS": "60"}
NARROW_TERMINAL = {"COLUMNS": "60", "TTY_COMPATIBLE": "1"}  # Rich draws as on a terminal
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def test_tables_keep_whole_names_and_ids_piped_and_on_a_narrow_terminal(
    daemon: Daemon, tmp_path: Path,
) -> None:
    run = daemon.cli
    run("create", LONG, "--type", "ct", "--start", check=True)
    piped = run("list", env=NARROW, check=True).stdout
    found = [line for line in piped.splitlines() if LONG in line]
    assert len(found) == 1 and "running" in found[0].split(), piped  # `| grep NAME` works
    assert piped.splitlines()[0].split()[:4] == ["ID", "NAME", "TYPE", "STATE"]
    terminal = run("list", env=NARROW_TERMINAL, check=True).stdout
    assert LONG in terminal, terminal

    run("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    run("backup", "create", LONG, "--to", "nas", check=True)
    with daemon.client() as c:
        backup_id = BackupCalls(c).backups("nas", LONG)[0].id
    assert len(backup_id) > 20
    for env in (NARROW, NARROW_TERMINAL):
        listed = run("backup", "list", "--to", "nas", env=env, check=True).stdout
        assert backup_id in listed, listed  # the id `restore` needs, whole
    assert LONG in run("info", LONG, env=NARROW, check=True).stdout.split()


def test_a_suspended_instance_is_suspended_in_stats_top_and_metrics(daemon: Daemon) -> None:
    run = daemon.cli
    run("create", "paused", "--type", "vm", "--start", check=True)
    run("create", "busy", "--type", "ct", "--start", check=True)
    run("suspend", "paused", check=True)
    stats = json.loads(run("stats", "paused", "--format", "json", check=True).stdout)
    assert (stats["state"], stats["running"]) == ("suspended", False)
    rows = dict(line.split(None, 1) for line in run("stats", "paused").stdout.splitlines())
    assert rows["state"] == "suspended" and "running" not in rows
    top = run("top", check=True).stdout.splitlines()
    assert top[1].split()[:3] == ["NAME", "TYPE", "STATE"]
    states = {line.split()[0]: line.split()[2] for line in top[2:] if line.strip()}
    assert states == {"paused": "suspended", "busy": "running"}
    with daemon.client() as c:
        text = c.metrics().splitlines()
    label = 'instance="paused",type="vm"'
    assert f"corral_instance_up{{{label}}} 0" in text
    assert f'corral_instance_state{{{label},state="suspended"}} 1' in text
    assert f'corral_instance_state{{{label},state="running"}} 0' in text
    assert 'corral_instance_state{instance="busy",type="ct",state="running"} 1' in text
    assert 'corral_instance_up{instance="busy",type="ct"} 1' in text


def test_convert_of_a_running_instance_needs_force_and_says_rebooted(daemon: Daemon) -> None:
    run = daemon.cli
    (daemon.state_dir / "templates" / "tiny" / "vmlinux").write_bytes(b"\x7fELF")
    run("create", "box", "--type", "ct", "--start", check=True)
    refused = run("convert", "box", "--to", "vm")
    assert refused.returncode == 1 and "reboots it; use --force" in refused.stderr
    with daemon.client() as c:
        with pytest.raises(ApiError, match="reboots it"):
            c.convert_instance("box", "vm")
        kept = c.get_instance("box")
        assert (kept.type, kept.state) == ("ct", "running")
    done = run("convert", "box", "--to", "vm", "--force", check=True)
    assert done.stdout.strip() == "Instance box is now a vm (rebooted)"
    run("stop", "box", check=True)
    quiet = run("convert", "box", "--to", "ct", check=True)  # stopped: nothing to ask
    assert quiet.stdout.strip() == "Instance box is now a ct"


def test_top_prints_frames_to_a_pipe_and_every_read_command_takes_format(
    daemon: Daemon, tmp_path: Path,
) -> None:
    run = daemon.cli
    run("create", "web1", "--type", "ct", "--start", check=True)
    one = run("top", check=True).stdout.splitlines()
    assert STAMP.match(one[0]) and one[1].split()[0] == "NAME" and "web1" in one[2]
    three = run("top", "-n", "3", "--interval", "0.1", check=True).stdout.splitlines()
    assert sum(bool(STAMP.match(line)) for line in three) == 3
    assert sum(line.startswith("web1 ") for line in three) == 3
    frames = run("top", "-n", "2", "--interval", "0.1", "--format", "json", check=True)
    parsed = [json.loads(line) for line in frames.stdout.splitlines()]
    assert len(parsed) == 2 and parsed[1]["time"] >= parsed[0]["time"]
    assert [s["instance"] for s in parsed[0]["instances"]] == ["web1"]
    documents = list(yaml.safe_load_all(run("top", "--format", "yaml", check=True).stdout))
    assert documents[0]["instances"][0]["state"] == "running"

    me = json.loads(run("whoami", "--format", "json", check=True).stdout)
    assert me["role"] == "admin" and me["user"] is False
    assert yaml.safe_load(run("whoami", "-f", "yaml", check=True).stdout)["role"] == "admin"
    run("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    run("backup", "schedule", "set", "web1", "--to", "nas", "--daily", "03:00",
        "--keep-last", "3", "--keep-weekly", "4", check=True)
    schedules = json.loads(run("backup", "schedule", "list", "--format", "json").stdout)
    assert [(s["instance"], s["keep_last"]) for s in schedules] == [("web1", 3)]
    table = run("backup", "schedule", "list", check=True).stdout
    assert "newest 3, 4 weekly" in table and "last=" not in table
    assert "retention" in run("backup", "schedule", "list", "--help").stdout


def test_memory_shows_as_asked_and_backup_info_agrees_with_list(
    daemon: Daemon, tmp_path: Path,
) -> None:
    run = daemon.cli
    run("create", "m1", "--type", "ct", "--memory", "256MB", "--disk", "64M", check=True)
    run("create", "m2", "--type", "ct", "--memory", "256M", "--disk", "64MB", check=True)
    rows = {line.split()[1]: line.split() for line in run("list").stdout.splitlines()[1:]}
    assert rows["m1"][5:7] == ["256MB", "64M"] and rows["m2"][5:7] == ["256M", "64MB"]
    info = dict(line.split(None, 1) for line in run("info", "m1").stdout.splitlines())
    assert info["memory"] == "256MB"

    run("disk", "add", "m1", "data", "--size", "8M", check=True)
    run("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    run("backup", "create", "m1", "--to", "nas", check=True)
    listed = run("backup", "list", "--to", "nas", check=True).stdout.splitlines()
    header, row = listed[0].split(), listed[1].split()
    disks = row[header.index("DISKS"): header.index("DISKS") + 2]  # "72.0 MiB"
    backup_id = row[0]
    shown = dict(line.split(None, 1) for line in
                 run("backup", "info", backup_id, "--to", "nas").stdout.splitlines())
    assert shown["disks"] == f"{' '.join(disks)} (2 disks)", (shown, listed)
    assert " ".join(disks) == "72.0 MiB"


def test_every_command_has_help(daemon: Daemon) -> None:
    for command, says in ((("backup", "info"), "One backup"),
                          (("backup", "delete"), "Delete one backup"),
                          (("backup", "target", "list"), "named backup targets"),
                          (("backup", "target", "remove"), "Forget a named target")):
        assert says in daemon.cli(*command, "--help", check=True).stdout, command


def test_console_log_is_text_without_control_sequences(daemon: Daemon) -> None:
    daemon.cli("create", "c1", "--type", "ct", "--start", check=True)
    typed = b"plain \x1b[1;32mgreen\x1b[0m \x1b]0;a title\x07done\r\n\x1b[6n"
    daemon.cli("console", "c1", "--linger", "1", stdin=typed, check=True)
    log = daemon.cli("console", "c1", "--log", check=True).stdout
    assert "plain green done\n" in log and "\x1b" not in log and "\r" not in log


def test_exec_says_it_waits_for_a_booting_guest_agent(daemon: Daemon) -> None:
    run = daemon.cli
    run("create", "vm1", "--type", "vm", "--start", check=True)
    with daemon.client() as c:
        booting = daemon.state_dir / "instances" / str(c.get_instance("vm1").id) / \
            "fake-agent-booting"  # the fake VM's guest plays "still booting"
        booting.touch()
        assert c.get_instance("vm1").agent == "waiting"
    env = {**os.environ, "CORRAL_SOCKET": str(daemon.socket)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral.cli.main", "exec", "vm1", "--", "echo", "inside"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    said = proc.stderr.readline()  # blocks until the hint (or the end, if there is none)
    booting.unlink()
    out, rest = proc.communicate(timeout=60)
    assert said == "waiting for the guest agent of vm1 (the VM is still booting)...\n"
    assert (proc.returncode, out, rest) == (0, "inside\n", "")
    again = run("exec", "vm1", "--", "echo", "again")
    assert (again.stdout, again.stderr) == ("again\n", "")
    shown = dict(line.split(None, 1) for line in run("info", "vm1").stdout.splitlines())
    assert shown["agent"] == "connected"
    run("create", "ct1", "--type", "ct", "--start", check=True)
    with daemon.client() as c:
        assert c.get_instance("ct1").agent is None


def test_host_info_piped_has_no_markup(daemon: Daemon) -> None:
    out = daemon.cli("host", "info", check=True).stdout
    assert "[green]" not in out and "[red]" not in out and "[/]" not in out, out
    assert re.search(r"\s(yes|no)\s", out), out


def test_a_missing_tls_certificate_is_an_error_not_a_traceback(daemon: Daemon) -> None:
    env = {"CORRAL_URL": "https://127.0.0.1:1", "CORRAL_TOKEN": "crl_x",
           "CORRAL_TLS_CERT": "/nonexistent/cert.pem"}
    proc = daemon.cli("whoami", env=env)
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "cannot read corrald's TLS certificate '/nonexistent/cert.pem'" in proc.stderr
