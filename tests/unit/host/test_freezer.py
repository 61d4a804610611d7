"""``host.freezer`` on a real freezer group (v1 here, v2 where that is the host's) holding a
process the test starts: frozen when it returns, thawed by ``thaw``, and a group already
frozen is left to whoever froze it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.host import freezer

V1 = Path("/sys/fs/cgroup/freezer")
V2 = Path("/sys/fs/cgroup")


def _root() -> Path | None:
    if (V1 / "freezer.state").exists() or (V1 / "tasks").exists():
        return V1
    if (V2 / "cgroup.controllers").exists():
        return V2
    return None


@pytest.fixture
def group() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    root = _root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup freezer (v1 freezer or cgroup2)")
    path = root / f"corral-test-freezer-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    child = subprocess.Popen(["sleep", "60"])
    try:
        (path / "cgroup.procs").write_text(str(child.pid))
        yield path, child
    finally:
        freezer.thaw(path)
        child.kill()
        child.wait()
        path.rmdir()


def _state(path: Path) -> str:
    if (path / "freezer.state").exists():
        return (path / "freezer.state").read_text().strip()
    return "FROZEN" if "frozen 1" in (path / "cgroup.events").read_text() else "THAWED"


def test_freeze_waits_for_frozen_and_thaw_undoes_it(
        group: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, _child = group
    assert freezer.freeze(path) is True
    assert _state(path) == "FROZEN"
    assert freezer.freeze(path) is False  # frozen already: not this call's to thaw
    freezer.thaw(path)
    assert _state(path) == "THAWED"


def test_a_missing_group_is_not_frozen(tmp_path: Path) -> None:
    assert freezer.freeze(tmp_path / "none") is False
