"""Bounded churn (bench/churn.py runs 200 cycles): 10 container and 2 VM create/start/stop/
delete cycles on the real drivers; corrald's fds, threads and RSS and the host's processes,
loop devices, mounts, netdevs, nft rules, tc classes and cgroups return to the baseline."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, real_daemon_in
from tests.system.churnlab import churn, settled
from tests.system.fixtures_template import tiny_template

__all__ = ["tiny_template"]


@pytest.fixture
def daemon(tiny_template: TemplateImage) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("lxc-start", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this host")
    state = Path(tempfile.mkdtemp(prefix="corral-churn-"))
    state.chmod(0o711)
    shutil.copytree(tiny_template.directory, state / "templates" / "tiny")
    with real_daemon_in(state) as daemon:
        yield daemon


def test_churn_returns_to_the_baseline(daemon: Daemon) -> None:
    before, after, left = churn(daemon, cts=10, vms=2)
    print(before, after, sep="\n")
    assert left == []
    assert settled(before, after) == []
