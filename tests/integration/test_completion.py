"""Completion of names corrald knows, through the installed bash script and `corral
__complete` (a real corrald with the fake driver)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Daemon

ROOT = Path(__file__).resolve().parents[2]
BASH_SCRIPT = ROOT / "packaging" / "completion" / "corral.bash"
ZSH_SCRIPT = ROOT / "packaging" / "completion" / "_corral"


def _bin(tmp_path: Path) -> Path:
    """A directory with a ``corral`` that runs this checkout's entry point."""
    directory = tmp_path / "bin"
    directory.mkdir()
    exe = directory / "corral"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m corral.cli.entry \"$@\"\n")
    exe.chmod(0o755)
    return directory


def _bash(daemon: Daemon, tmp_path: Path, *words: str) -> list[str]:
    """COMPREPLY of the bash script for ``corral WORDS...`` (the last word is completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("corral", *words))
    script = (f"source {BASH_SCRIPT}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
              "_corral; printf '%s\\n' \"${COMPREPLY[@]}\"")
    env = {"PATH": f"{_bin(tmp_path)}:/usr/bin:/bin", "CORRAL_SOCKET": str(daemon.socket)}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    shutil.rmtree(tmp_path / "bin")
    return [line for line in out.splitlines() if line]


def test_names_from_corrald(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("host", "policy", "cpu=100", "memory=100", check=True)
    for name in ("web1", "web2", "db1"):
        daemon.cli("create", name, "--type", "ct", "--template", "tiny", "--cpus", "1",
                   "--memory", "64M", check=True)
    daemon.cli("snapshot", "create", "web1", "before-upgrade", check=True)
    daemon.cli("snapshot", "create", "web1", "second", check=True)
    daemon.cli("network", "create", "lan", "--subnet", "10.78.0.0/24", check=True)
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    daemon.cli("backup", "create", "db1", "--to", "nas", check=True)
    daemon.cli("user", "add", "alice", check=True)
    backup_id = daemon.cli("backup", "list", "--to", "nas", "-f", "json", check=True)
    backup = backup_id.stdout.split('"id": "', 1)[1].split('"', 1)[0]

    assert _bash(daemon, tmp_path, "start", "") == ["web1", "web2", "db1"]
    assert _bash(daemon, tmp_path, "start", "web1", "w") == ["web2"]  # not twice
    assert _bash(daemon, tmp_path, "info", "d") == ["db1"]
    assert _bash(daemon, tmp_path, "snapshot", "revert", "web1", "") == [
        "before-upgrade", "second"]
    assert _bash(daemon, tmp_path, "create", "x", "--template", "") == ["tiny"]
    assert _bash(daemon, tmp_path, "create", "x", "--template", "=", "t") == ["tiny"]
    assert _bash(daemon, tmp_path, "network", "delete", "") == ["lan"]
    assert _bash(daemon, tmp_path, "storage", "info", "") == ["default"]
    assert _bash(daemon, tmp_path, "backup", "info", "--to", "nas", "") == [backup]
    assert _bash(daemon, tmp_path, "backup", "create", "--to", "") == ["nas"]
    assert _bash(daemon, tmp_path, "user", "token", "") == ["alice"]
    assert _bash(daemon, tmp_path, "sn") == ["snapshot"]


def test_nothing_to_complete_falls_back_to_file_names(daemon: Daemon, tmp_path: Path) -> None:
    # `template import FILE`: the script leaves COMPREPLY empty for bash's file completion
    assert _bash(daemon, tmp_path, "template", "import", "") == []


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed on this host")
def test_zsh_script(daemon: Daemon, tmp_path: Path) -> None:
    """The zsh function with zsh's own ``words``/``CURRENT``; ``compadd`` and ``_files``
    (completion-widget builtins, usable only inside a widget) print what they were given."""
    daemon.cli("create", "web1", "--type", "ct", "--template", "tiny", check=True)
    daemon.cli("snapshot", "create", "web1", "before-upgrade", check=True)

    def zsh(*words: str) -> list[str]:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("corral", *words))
        script = ("compadd() { while [[ $1 != -- ]]; do shift; done; shift; "
                  "print -l -- \"$@\" }; _files() { print FILES }; "
                  f"words=({quoted}); CURRENT={len(words) + 1}; source {ZSH_SCRIPT}")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "CORRAL_SOCKET": str(daemon.socket)}
        out = subprocess.run(["zsh", "-f", "-c", script], env=env, capture_output=True,
                             text=True, check=True, timeout=30).stdout
        return out.split()

    bindir = _bin(tmp_path)
    assert zsh("snapshot", "revert", "web1", "") == ["before-upgrade"]
    assert zsh("start", "") == ["web1"]
    assert zsh("temp") == ["template"]
    assert zsh("template", "import", "") == ["FILES"]
