"""The LXC driver's batch state read against real containers: no process per container, and
a change made behind Corral's back (lxc-stop, lxc-freeze by hand, init killed) shows."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import RuntimeState
from corral.drivers.lxc import LxcDriver
from corral.drivers.lxc.driver import lxc_name, wait_for_console
from corral.host.idmap import ensure_root_range
from corral.templates.image import TemplateImage
from tests.integration.conftest import wait_until
from tests.system.fixtures_template import tiny_template
from tests.system.test_lxc_driver import READY, Env, _no_progress, leftovers

__all__ = ["tiny_template"]

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("lxc-start") is None or os.geteuid() != 0,
                       reason="needs lxc-start and root"),
]

_SPAWNS = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec",
           "os.spawn", "os.system", "pty.spawn"}


class SpawnCounter:
    """Counts processes this interpreter starts, through Python's audit events (a hook
    cannot be removed, so it counts only while ``armed``)."""

    def __init__(self) -> None:
        self.armed = False
        self.seen: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, _args: tuple[Any, ...]) -> None:
        if self.armed and event in _SPAWNS:
            self.seen.append(event)


SPAWNS = SpawnCounter()


@pytest.fixture(scope="module")
def env(tiny_template: TemplateImage) -> Iterator[Env]:
    ensure_root_range()
    root = Path(tempfile.mkdtemp(prefix="corral-lxc-state-"))
    root.chmod(0o711)
    try:
        driver = LxcDriver(root / "lxc")
        yield Env(driver, tiny_template, root)
    finally:
        driver.close()
        shutil.rmtree(root)


_until = wait_until


def _lxc(env: Env, tool: str, name: str, *args: str) -> str:
    done = subprocess.run([tool, "-n", name, "-P", str(env.driver.lxcpath), *args],
                          check=True, capture_output=True, text=True, timeout=60)
    return done.stdout


def test_batch_state_spawns_nothing_and_sees_changes_behind_corrals_back(env: Env) -> None:
    specs = [env.spec(f"batch{i}") for i in range(5)]
    try:
        for spec in specs:
            env.driver.create(spec, env.template, _no_progress)
            env.driver.start(spec, env.template)
            assert wait_for_console(spec, env.driver, READY, 30)
        # each start read and watched its container already (not the first list after it)
        kept = env.driver._states
        assert kept is not None and all(lxc_name(s) in kept._entries for s in specs)
        a, b, c = specs[:3]

        SPAWNS.armed = True
        try:
            found = env.driver.statuses(specs)
            usage = env.driver.stats_many(specs)
            cpu = env.driver.cpu_times(specs)
        finally:
            SPAWNS.armed = False
        assert SPAWNS.seen == []
        assert {found[s.id].state for s in specs} == {RuntimeState.RUNNING}
        assert set(cpu) == {s.id for s in specs}
        again = env.driver.statuses(specs)  # nothing changed: what was read is kept
        assert all(again[s.id] is found[s.id] for s in specs)
        assert all(usage[s.id].running and usage[s.id].memory_used > 0 for s in specs)
        for spec in specs:  # the init pid is the one LXC itself reports
            said = _lxc(env, "lxc-info", lxc_name(spec), "-p", "-H").strip()
            assert found[spec.id].pid == int(said)

        _lxc(env, "lxc-stop", lxc_name(a), "-k")  # by hand, not through the driver
        _lxc(env, "lxc-freeze", lxc_name(b))
        os.kill(found[c.id].pid or 0, signal.SIGKILL)  # the guest's init dies

        def states() -> dict[int, RuntimeState]:
            return {i: s.state for i, s in env.driver.statuses(specs).items()}

        want = {a.id: RuntimeState.STOPPED, b.id: RuntimeState.SUSPENDED,
                c.id: RuntimeState.STOPPED, **{s.id: RuntimeState.RUNNING for s in specs[3:]}}
        assert _until(lambda: states() == want), states()
        _lxc(env, "lxc-unfreeze", lxc_name(b))
        assert env.driver.statuses([b])[b.id].state is RuntimeState.RUNNING
        # a kept "stopped" goes as soon as the container starts (LXC making the container's
        # cgroup tells the batch read; the driver's start reads it again too)
        assert env.driver.statuses([a])[a.id].state is RuntimeState.STOPPED
        env.driver.start(a, env.template)
        assert env.driver.statuses([a])[a.id].state is RuntimeState.RUNNING
    finally:
        for spec in specs:
            env.driver.stop(spec, force=True, timeout=5)
            env.driver.delete(spec)
    for spec in specs:
        assert leftovers(env, spec) == []
