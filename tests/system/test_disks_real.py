"""Data disks and foreign images with real LXC and QEMU through corrald: a CT disk mounted
idmapped at its path, a microvm VM getting its disk at the next start, live hot-add / grow /
remove on a q35 VM, a foreign raw image booting SeaBIOS with a VNC socket that speaks RFB."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, real_daemon_in
from tests.system.fixtures_template import install_templates, tiny_template
from tests.system.test_daemon_real import _skip_reason

__all__ = ["tiny_template"]

pytestmark = [pytest.mark.system]
MiB = 1024**2


@pytest.fixture(scope="module")
def site(tiny_template: TemplateImage, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Daemon]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="corral-disks-"))
    state.chmod(0o711)  # unprivileged containers (host uid 100000) walk to their disks
    install_templates(state, tiny_template, tmp_path_factory.mktemp("template-q35"))
    with real_daemon_in(state) as daemon:
        yield daemon


def _sh(d: Daemon, name: str, script: str, timeout: float = 30) -> str:
    with d.client() as c:
        code, out, err = c.exec(name, ["sh", "-c", script], timeout=timeout)
    assert code == 0, (script, out, err)
    return out.decode()


def _until(d: Daemon, name: str, script: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            return _sh(d, name, script)
        except Exception as exc:  # not booted yet, or the device not there yet
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{name}: {script!r} never succeeded: {last}")


def test_container_disk_is_mounted_idmapped_and_grows_at_next_start(site: Daemon) -> None:
    d = site
    d.cli("create", "ct1", "--type", "ct", check=True)
    d.cli("disk", "add", "ct1", "data", "--size", "32M", "--path", "/srv/data", check=True)
    d.cli("start", "ct1", check=True)
    out = _until(d, "ct1", "echo hi > /srv/data/f && stat -c '%u %g' /srv/data/f && "
                 "df -k /srv/data | tail -1")
    owner, df = out.splitlines()
    assert owner == "0 0"  # root inside, through the idmapped mount
    size_kib = int(df.split()[1])
    grown = d.cli("disk", "resize", "ct1", "data", "64M", check=True).stdout
    assert "at the next start" in grown and "CAP_SYS_RESOURCE" in grown
    removal = d.cli("disk", "remove", "ct1", "data")
    assert removal.returncode == 1 and "mounted at /srv/data" in removal.stderr
    d.cli("disk", "add", "ct1", "queued", "--size", "16M", check=True)  # for the next start
    unqueued = d.cli("disk", "remove", "ct1", "queued")  # never mounted: it just goes
    assert unqueued.returncode == 0, unqueued.stderr
    d.cli("restart", "ct1", check=True)
    df2 = _until(d, "ct1", "cat /srv/data/f && df -k /srv/data | tail -1").splitlines()
    assert df2[0] == "hi" and int(df2[1].split()[1]) > size_kib * 1.8
    d.cli("stop", "ct1", check=True)
    with d.client() as c:
        image = next(x for x in c.list_disks("ct1") if x.name == "data")
    assert image.filesystem == 64 * MiB
    d.cli("disk", "remove", "ct1", "data", check=True)
    assert not Path(image.path).exists()
    d.cli("delete", "ct1", check=True)


def test_microvm_gets_a_disk_at_next_start_and_grows_live(site: Daemon) -> None:
    d = site
    d.cli("create", "vm1", "--type", "vm", "--memory", "160M", "--start", check=True)
    _until(d, "vm1", "true")
    added = d.cli("disk", "add", "vm1", "data", "--size", "16M", check=True).stdout
    assert "at the next start" in added and "microvm has no hot-plug bus" in added
    refused = d.cli("disk", "remove", "vm1", "data")
    assert refused.returncode == 0  # not attached yet: nothing for the guest to let go of
    d.cli("disk", "add", "vm1", "data", "--size", "16M", check=True)
    d.cli("restart", "vm1", check=True)
    assert _until(d, "vm1", "cat /sys/block/vdb/serial").strip() == "data"
    assert int(_sh(d, "vm1", "cat /sys/block/vdb/size")) * 512 == 16 * MiB
    grown = d.cli("disk", "resize", "vm1", "data", "24M", check=True).stdout
    assert "live" in grown
    assert int(_until(d, "vm1", "cat /sys/block/vdb/size")) * 512 == 24 * MiB
    busy = d.cli("disk", "remove", "vm1", "data")
    assert busy.returncode == 1 and "microvm has no hot-plug bus" in busy.stderr
    d.cli("delete", "--force", "vm1", check=True)


def test_q35_vm_hot_adds_and_removes_a_disk(site: Daemon) -> None:
    d = site
    d.cli("create", "vmq", "--type", "vm", "--template", "tinyq35", "--memory", "160M",
          "--start", check=True)
    _until(d, "vmq", "true")
    started = time.monotonic()
    added = d.cli("disk", "add", "vmq", "logs", "--size", "16M", check=True).stdout
    assert "added: live" in added
    found = _until(d, "vmq", "for b in /sys/block/vd*; do "
                   "[ \"$(cat $b/serial)\" = logs ] && echo ${b##*/}; done | grep vd")
    print(f"q35 disk hot-add until the guest sees it: {time.monotonic() - started:.2f} s")
    dev = found.strip()
    d.cli("disk", "resize", "vmq", "logs", "32M", check=True)
    assert int(_until(d, "vmq", f"cat /sys/block/{dev}/size")) * 512 == 32 * MiB
    started = time.monotonic()
    d.cli("disk", "remove", "vmq", "logs", check=True)
    print(f"q35 disk hot-remove: {time.monotonic() - started:.2f} s")
    assert _sh(d, "vmq", f"test -e /sys/block/{dev} && echo there || echo gone").strip() == "gone"
    d.cli("delete", "--force", "vmq", check=True)


def test_foreign_raw_image_boots_seabios_with_a_vnc_console(site: Daemon) -> None:
    d = site
    image = d.state_dir / "foreign.raw"
    with image.open("wb") as f:  # a boot sector that spins: "jmp $"
        f.write(b"\xeb\xfe" + b"\0" * 508 + b"\x55\xaa")
        f.truncate(8 * MiB)
    d.cli("create", "img", "--type", "vm", "--image", str(image), "--memory", "64M",
          "--start", check=True)
    info = json.loads(d.cli("info", "img", "-f", "json", check=True).stdout)
    run = d.state_dir / "instances" / str(info["id"]) / "run"
    argv = Path(f"/proc/{info['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"-kernel" not in argv and b"q35,memory-backend=ram" in argv
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(run / "vnc.sock"))
        assert s.recv(12) == b"RFB 003.008\n"
    hint = d.cli("console", "img", "--vnc", check=True).stdout
    assert str(run / "vnc.sock") in hint and "ssh -N -L 5900:" in hint
    proxy = subprocess.Popen(
        [sys.executable, "-m", "corral.cli.main", "console", "img", "--vnc", "--vnc-port", "0"],
        env=dict(os.environ, CORRAL_SOCKET=str(d.socket)), stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None
        port = int(proxy.stdout.readline().split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.recv(12) == b"RFB 003.008\n"
    finally:
        proxy.terminate()
        proxy.wait(10)
    refused = d.cli("exec", "img", "--", "true")
    assert refused.returncode == 1 and "without the Corral guest agent" in refused.stderr
    d.cli("stop", "img", "--timeout", "1", check=True)  # no agent, no ACPI: forced at 1 s
    d.cli("delete", "img", check=True)
