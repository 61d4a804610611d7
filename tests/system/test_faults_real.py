"""The containers' fault matrix: corrald kill -9'd at a named point of each operation's phases
(services/faults.py, armed through ``--test-faults``), then started again: the instance is in
a state the CLI explains, a guest that ran still runs, a retry succeeds, nothing is orphaned
(tests/system/orphans.py). Also kill -9 of a container's LXC monitor. The VMs' cases are in
bench/faults.py (25-40 s each here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.services.faults import ENV
from corral.templates.image import TemplateImage
from tests.integration.conftest import (
    Daemon,
    delete_everything,
    start_daemon,
    stop_daemon,
    wait_until,
)
from tests.system.fixtures_template import tiny_template
from tests.system.orphans import Baseline, instance_ids, orphans

__all__ = ["tiny_template"]

EXPLAINED = {"stopped", "running", "error"}
KINDS = {"ct": ("--disk", "256M"), "vm": ("--disk", "1G", "--memory", "256M")}


@dataclass(frozen=True)
class Case:
    point: str
    setup: tuple[tuple[str, ...], ...]
    action: tuple[str, ...]
    expect: dict[str, str]
    """Each instance's state after the restart ("gone": no row)."""
    retry: tuple[str, ...] | None = None  # default: the action again


GONE = "gone"


TARGET = "{target}"
"""A backup target directory (in the case's own temporary directory)."""
LATEST = "{backup}"
"""The newest backup in ``TARGET`` (known once the setup made it)."""

SUITE = {"disk_add.after_file", "disk_resize.after_row", "convert.after_old_runtime",
         "backup.storing", "restore.after_create", "snapshot.after_capture"}
"""Of the points beyond the first matrix (convert, disks, backup, restore, memory
snapshot), one per operation runs in the suite; bench/faults.py --kind ct runs them all."""


def cases(kind: str = "ct", full: bool = True) -> list[Case]:
    """The matrix for one kind of instance; ``full``: every point of the operations added
    for issue 20 (else one per operation, ``SUITE``)."""
    create = ("create", "f1", "--type", kind, "--template", "tiny", *KINDS[kind])
    started = (create, ("start", "f1"))
    more = _more(kind, create, started)
    return _matrix(create, started) + [c for c in more if full or c.point in SUITE]


def _more(kind: str, CREATE: tuple[str, ...], STARTED: tuple[tuple[str, ...], ...]
          ) -> list[Case]:
    other = "ct" if kind == "vm" else "vm"
    disk = ("disk", "add", "f1", "d1", "--size", "64M")
    backup = ("backup", "create", "f1", "--to", TARGET)
    backed = (CREATE, backup)
    restore = ("restore", LATEST, "--to", TARGET)
    return [
        # the disk's row and image are made before it is attached: a kill after both leaves
        # the disk added (the retry adds another)
        Case("disk_add.after_file", (CREATE,), disk, {"f1": "stopped"},
             retry=("disk", "add", "f1", "d2", "--size", "64M")),
        Case("disk_add.after_row", (CREATE,), disk, {"f1": "stopped"},
             retry=("disk", "add", "f1", "d2", "--size", "64M")),
        Case("disk_resize.after_grow", (CREATE, disk), ("disk", "resize", "f1", "d1", "96M"),
             {"f1": "stopped"}),
        Case("disk_resize.after_row", (CREATE, disk), ("disk", "resize", "f1", "d1", "96M"),
             {"f1": "stopped"}),
        Case("convert.after_old_runtime", (CREATE,), ("convert", "f1", "--to", other),
             {"f1": "stopped"}),
        Case("convert.after_kind", (CREATE,), ("convert", "f1", "--to", other),
             {"f1": "stopped"}, retry=("convert", "f1", "--to", kind)),
        Case("convert.end", (CREATE,), ("convert", "f1", "--to", other), {"f1": "stopped"},
             retry=("convert", "f1", "--to", kind)),
        Case("backup.after_capture", STARTED, backup, {"f1": "running"}),
        Case("backup.storing", (CREATE,), backup, {"f1": "stopped"}),
        Case("backup.end", (CREATE,), backup, {"f1": "stopped"}),
        Case("restore.after_create", backed, (*restore, "--as", "f2"),
             {"f1": "stopped", "f2": GONE}),
        Case("restore.after_write", backed, restore, {"f1": "stopped"}),
        Case("restore.end", backed, restore, {"f1": "stopped"}),
        # a container's memory snapshot: privileged (LXC 5.0's CRIU restore cannot give an
        # unprivileged container's root its idmap: Corral refuses --memory for those)
        Case("snapshot.after_capture",
             ((*CREATE, "--privileged") if kind == "ct" else CREATE, ("start", "f1")),
             ("snapshot", "create", "f1", "s1", "--memory"), {"f1": "running"}),
    ]


def _matrix(CREATE: tuple[str, ...], STARTED: tuple[tuple[str, ...], ...]) -> list[Case]:
    return [
        Case("create.after_directory", (), CREATE, {"f1": GONE}),
        Case("create.after_disk", (), CREATE, {"f1": GONE}),
        Case("create.after_driver", (), CREATE, {"f1": GONE}),
        Case("start.begin", (CREATE,), ("start", "f1"), {"f1": "stopped"}),
        Case("start.end", (CREATE,), ("start", "f1"), {"f1": "running"},
             retry=("stop", "f1", "--force")),
        Case("stop.begin", STARTED, ("stop", "f1", "--force"), {"f1": "running"}),
        Case("stop.end", STARTED, ("stop", "f1", "--force"), {"f1": "stopped"},
             retry=("start", "f1")),
        Case("delete.after_driver", (CREATE,), ("delete", "f1"), {"f1": GONE}, retry=CREATE),
        Case("snapshot.begin", STARTED, ("snapshot", "create", "f1", "s1"), {"f1": "running"}),
        Case("snapshot.end", (CREATE,), ("snapshot", "create", "f1", "s1"), {"f1": "stopped"},
             retry=("snapshot", "create", "f1", "s2")),
        Case("revert.begin", (CREATE, ("snapshot", "create", "f1", "s1")),
             ("snapshot", "revert", "f1", "s1"), {"f1": "stopped"}),
        Case("clone.begin", (CREATE,), ("clone", "f1", "f2"), {"f1": "stopped", "f2": GONE}),
        Case("clone.end", (CREATE,), ("clone", "f1", "f2"), {"f1": "stopped"},
             retry=("clone", "f1", "f3")),
    ]


CASES = cases(full=False)
CREATE = CASES[0].action


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed on this host"
    return None


@pytest.fixture(scope="module")
def state(tiny_template: TemplateImage) -> Iterator[Path]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="corral-faults-"))
    tmp.chmod(0o711)  # unprivileged containers walk to their disks
    shutil.copytree(tiny_template.directory, tmp / "templates" / "tiny")
    try:
        yield tmp
    finally:
        try:
            delete_everything(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _daemon(state: Path, fault: str | None, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    if fault:
        monkeypatch.setenv(ENV, fault)
    else:
        monkeypatch.delenv(ENV, raising=False)
    return start_daemon(state, drivers="real", options=("--test-faults",))


def _states(daemon: Daemon) -> dict[str, str]:
    listed = json.loads(daemon.cli("list", "--format", "json", check=True).stdout)
    return {i["name"]: i["state"] for i in listed}


def _running_ids(daemon: Daemon) -> set[int]:
    ids = {v: k for k, v in {i: n for i, n in _names(daemon).items()}.items()}
    return {ids[name] for name, st in _states(daemon).items() if st == "running"}


def _names(daemon: Daemon) -> dict[int, str]:
    listed = json.loads(daemon.cli("list", "--format", "json", check=True).stdout)
    return {int(i["id"]): i["name"] for i in listed}


def _clean(daemon: Daemon) -> None:
    for name in _states(daemon):
        daemon.cli("delete", "--force", name, check=True)


@pytest.mark.parametrize("case", CASES, ids=[c.point for c in CASES])
def test_kill_at_fault_point(state: Path, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    run_case(state, case, monkeypatch)


def run_case(state: Path, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 at ``case.point``, restart, check, retry, check, clean (bench/faults.py too)."""
    baseline = Baseline()
    if case.point.startswith("snapshot.after_capture"):
        _need_criu(case)
    target = Path(tempfile.mkdtemp(prefix="corral-faults-target-", dir=state))
    daemon = _daemon(state, f"{case.point}=kill", monkeypatch)
    try:
        for step in case.setup:
            daemon.cli(*_fill(daemon, step, target), check=True)
        before = _states(daemon)
        answer = daemon.cli(*_fill(daemon, case.action, target))
        assert answer.returncode != 0, f"{case.point} never fired: {answer.stdout}"
        assert wait_until(lambda: daemon.process.poll() is not None, 15)
        assert daemon.process.returncode == -signal.SIGKILL
    finally:
        stop_daemon(daemon)
    again = _daemon(state, None, monkeypatch)
    try:
        after = _states(again)
        assert set(after.values()) <= EXPLAINED, after
        for name, was in before.items():  # the guests the action did not touch still run
            if was == "running" and name not in case.expect:
                assert after.get(name) == "running", (name, after)
        for name, expected in case.expect.items():
            assert after.get(name, GONE) == expected, (name, after)
            if expected == "running":
                assert again.cli("exec", name, "--", "true").returncode == 0
        ops = json.loads(again.cli("operation", "list", "--format", "json").stdout or "[]")
        assert not [o for o in ops if o["status"] in ("pending", "running")], ops
        left = orphans(state, baseline, _running_ids(again))
        assert left == [], left
        retry = case.retry or case.action
        again.cli(*_fill(again, retry, target), check=True)
        left = orphans(state, baseline, _running_ids(again))
        assert left == [], left
        if TARGET in case.action:  # the chain in the target is whole
            again.cli("backup", "verify", "--to", str(target), check=True)
        _clean(again)
        assert instance_ids(state) == {}
        left = orphans(state, baseline)
        assert left == [], left
    finally:
        stop_daemon(again)
        shutil.rmtree(target, ignore_errors=True)


def _fill(daemon: Daemon, step: tuple[str, ...], target: Path) -> tuple[str, ...]:
    """``step`` with ``TARGET`` and ``LATEST`` put in."""
    if LATEST in step:
        listed = json.loads(daemon.cli("backup", "list", "--to", str(target), "--format",
                                       "json", check=True).stdout)
        assert listed, "no backup in the target"
        latest = max(listed, key=lambda b: str(b["created_at"]))["id"]
        step = tuple(str(latest) if part == LATEST else part for part in step)
    return tuple(str(target) if part == TARGET else part for part in step)


def _need_criu(case: Case) -> None:
    """A memory snapshot of a container needs CRIU: skipped with the probe's reason."""
    if "--memory" in case.action and "vm" not in case.setup[0]:
        from corral.host.features import criu

        found = criu()
        if not found.available:
            pytest.skip(f"a container's memory snapshot needs CRIU: {found.detail}")


def assert_crashed(daemon: Daemon, name: str, what: str) -> None:
    """``name`` is shown stopped with a crash reason naming ``what``, in info and list."""
    info = json.loads(daemon.cli("info", name, "--format", "json", check=True).stdout)
    assert info["state"] == "stopped", info
    reason = info["stop_reason"] or ""
    assert reason.startswith("crashed: ") and what in reason, info
    listed = json.loads(daemon.cli("list", "--format", "json", check=True).stdout)
    assert [i["stop_reason"] for i in listed if i["name"] == name] == [reason], listed
    shown = daemon.cli("info", name, check=True).stdout
    assert "stop reason" in shown and reason in shown, shown


def test_kill_of_the_lxc_monitor(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = Baseline()
    daemon = _daemon(state, None, monkeypatch)
    try:
        daemon.cli(*CREATE, check=True)
        daemon.cli("start", "f1", check=True)
        (fid,) = _names(daemon)
        monitors = [line.split()[0] for line in os.popen("ps -eo pid=,args=").read().splitlines()
                    if "[lxc monitor]" in line and f"{state}/lxc {fid}" in line]
        assert monitors, "no LXC monitor for f1"
        os.kill(int(monitors[0]), signal.SIGKILL)
        assert wait_until(lambda: _states(daemon)["f1"] != "running", 30), _states(daemon)
        assert_crashed(daemon, "f1", "LXC monitor")
        daemon.cli("start", "f1", check=True)
        assert daemon.cli("exec", "f1", "--", "true").returncode == 0
        assert json.loads(daemon.cli("info", "f1", "--format", "json",
                                     check=True).stdout)["stop_reason"] is None
        _clean(daemon)
        assert orphans(state, baseline) == []
    finally:
        stop_daemon(daemon)
