"""Every external command starts in host/ (``host.run`` and the posix_spawn path under it):
no module outside ``corral.host`` imports ``subprocess`` or ``ctypes``, or starts a process
with ``os``/``asyncio`` itself. Walks the source, so a new crossing fails here the day it is
written."""

from __future__ import annotations

import ast
from pathlib import Path

import corral

SRC = Path(corral.__file__).parent
HOST = SRC / "host"
FORBIDDEN_MODULES = {"subprocess", "ctypes", "pty"}
FORBIDDEN_CALLS = {
    "os": {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnv",
           "spawnvp", "spawnl", "spawnlp", "execv", "execve", "execvp", "execvpe", "execl",
           "execlp"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
}


def crossings(path: Path) -> list[str]:
    """``file:line what`` for every forbidden import or process start in ``path``."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    where = path.name if SRC not in path.parents else path.relative_to(SRC.parent)
    for node in ast.walk(tree):
        names: list[str] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [f"{where}:{line} imports {name}" for name in names
                  if name.split(".")[0] in FORBIDDEN_MODULES]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.attr in FORBIDDEN_CALLS.get(node.value.id, set())):
            found.append(f"{where}:{line} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_outside_host_starts_processes_itself() -> None:
    modules = [p for p in SRC.rglob("*.py") if HOST not in p.parents]
    assert len(modules) > 50  # the walk found the package
    assert [c for p in sorted(modules) for c in crossings(p)] == []


def test_the_walk_finds_each_kind_of_crossing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import subprocess\nfrom ctypes import util\nimport os, asyncio\n"
                      "os.system('x')\nasyncio.create_subprocess_exec('x')\n"
                      "from pty import fork\nimport subprocessing\n")
    assert sorted(line.split(" ", 1)[1] for line in crossings(sample)) == [
        "imports ctypes", "imports pty", "imports subprocess",
        "uses asyncio.create_subprocess_exec", "uses os.system"]
