"""Completion of commands, options and choices from the stored tree (no daemon: name kinds
complete to nothing when corrald does not answer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.cli import complete

TREE: dict[str, Any] = json.loads(Path(complete.TREE_FILE).read_text())


@pytest.fixture(autouse=True)
def _no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CORRAL_URL", raising=False)
    monkeypatch.setenv("CORRAL_SOCKET", str(tmp_path / "nobody-listens.sock"))


def c(*words: str) -> list[str]:
    """Candidates for the last word of ``corral WORDS...``."""
    line = ["corral", *words]
    return complete.candidates(TREE, line, len(line) - 1)


def test_commands_and_groups() -> None:
    assert c("st") == ["start", "stats", "stop", "storage"]
    assert c("snapshot", "") == ["create", "delete", "list", "revert"]
    assert c("backup", "target", "") == ["add", "list", "remove"]
    assert "template" in c("")


def test_options_and_their_values() -> None:
    assert c("create", "--t") == ["--template", "--type"]
    assert c("create", "web1", "--type", "") == ["ct", "vm"]
    assert c("list", "--format", "j") == ["json"]
    assert c("create", "--type=v") == ["--type=vm"]
    assert c("create", "--type", "=", "") == ["ct", "vm"]  # bash splits at '='
    assert c("convert", "web1", "--to", "") == ["ct", "vm"]
    assert "--help" in c("start", "-")


def test_options_taking_a_value_do_not_count_as_arguments() -> None:
    # `--cpus 2` is an option and its value: the next word is still no argument of create's
    assert c("create", "--cpus", "2", "--type", "c") == ["ct"]
    # past a command's last argument nothing more is offered
    assert c("info", "web1", "") == []


def test_names_without_a_daemon_complete_to_nothing() -> None:
    assert c("start", "") == []
    assert c("snapshot", "revert", "web1", "") == []
    assert complete.names("instance") == []


def test_the_cli_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert complete.main(["bash", "2", "corral", "template", "b"]) == 0
    assert capsys.readouterr().out == "build\n"
    assert complete.main(["bash"]) == 2


def test_completion_imports_no_cli_libraries() -> None:
    import subprocess
    import sys

    probe = ("import sys; sys.argv = ['corral', '__complete', 'bash', '1', 'corral', 'st']\n"
             "from corral.cli import entry\n"
             "try:\n    entry.main()\nexcept SystemExit:\n    pass\n"
             "heavy = {'typer', 'rich', 'httpx', 'click', 'pydantic', 'corral.client',"
             " 'http.client', 'ssl'}\n"
             "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["start", "stats", "stop", "storage", "[]"]
