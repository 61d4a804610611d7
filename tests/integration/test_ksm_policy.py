"""The host policy's KSM switch through the daemon (fake driver) and the CLI: a fake-driver
daemon has a KSM directory of its own, so the host's kernel is never touched here."""

from __future__ import annotations

import json

from tests.integration.conftest import Daemon
from tests.unit.host.test_ksm import fake_ksm


def test_ksm_switch_and_host_info(daemon: Daemon) -> None:
    shown = daemon.cli("host", "policy", check=True).stdout
    assert "ksm" in shown and "off" in shown
    refused = daemon.cli("host", "policy", "ksm=on")  # this daemon's "kernel" has no KSM
    assert refused.returncode != 0 and "no KSM" in refused.stderr
    info = json.loads(daemon.cli("host", "info", "-f", "json", check=True).stdout)
    assert info["features"]["ksm"]["available"] is False

    root = fake_ksm(daemon.state_dir / "fake-ksm", shared=3, sharing=512)
    said = json.loads(daemon.cli("host", "policy", "ksm=on", "-f", "json", check=True).stdout)
    assert said["ksm"] is True and (root / "run").read_text() == "1"
    ksm = json.loads(daemon.cli("host", "info", "-f", "json", check=True).stdout)[
        "features"]["ksm"]
    assert ksm["running"] and ksm["pages_sharing"] == 512 and ksm["saved_mib"] > 0
    daemon.cli("host", "policy", "ksm=off", check=True)
    assert (root / "run").read_text() == "0"

    # the VM launch priority, the same daemon: on by default, changed, refused clearly (its
    # effect on a real VM's cgroup: tests/system/test_qemu_driver.py)
    assert "16x the CPU weight until QEMU is up" in daemon.cli("host", "policy",
                                                               check=True).stdout
    said = daemon.cli("host", "policy", "vm_launch_priority=1", "-f", "json", check=True)
    assert json.loads(said.stdout)["vm_launch_priority"] == 1
    refused = daemon.cli("host", "policy", "vm_launch_priority=0")
    assert refused.returncode != 0 and "from 1 to 256" in refused.stderr
