from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.services.templates import BUILDERS, builder_for
from corral.templates.builders.debian import (
    APPLIANCES,
    PACKAGES,
    Appliance,
    _chroot_provision,
    cache_key,
    metadata,
    render_provision,
)


def test_nginx_provisioning_script() -> None:
    script = render_provision(APPLIANCES["debian-12-nginx"])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh" and "set -eu" in lines
    assert "apt-get install -y --no-install-recommends nginx" in lines
    assert "systemctl enable nginx.service" in lines
    assert lines.index("apt-get update") < lines.index(
        "apt-get install -y --no-install-recommends nginx")
    assert "rm -rf /var/lib/apt/lists/*" in lines


def test_provisioning_writes_files_exactly(tmp_path: Path) -> None:
    content = "it's <b>quoted</b> $HOME `x` \\n\n"
    target = tmp_path / "www" / "index.html"
    appliance = Appliance("t", "t", ("p",), {str(target): content})
    script = render_provision(appliance)
    # run it with apt-get/systemctl/rm stubbed: the quoting must survive any content
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("apt-get", "systemctl", "rm"):
        (stubs / tool).write_text("#!/bin/sh\nexit 0\n")
        (stubs / tool).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}
    subprocess.run(["sh", "-c", script], check=True, env=env)
    assert target.read_text() == content


def test_metadata_boots_both_kinds() -> None:
    meta = metadata("debian-12", "d", "1", {"source": "host:6"}, {"rootfs.tar.gz": "ab"},
                    1024**3)
    assert meta["ct"]["halt_signal"] == "SIGRTMIN+3"  # systemd's halt signal
    assert "corral.agent=org.corral.agent" in meta["vm"]["cmdline"]
    assert meta["resources"]["disk"] == 1024**3 and meta["os"] == "debian-12"


def test_cache_key_follows_inputs() -> None:
    base = cache_key("bookworm", "http://m", PACKAGES)
    assert base == cache_key("bookworm", "http://m", tuple(reversed(PACKAGES)))
    assert base != cache_key("trixie", "http://m", PACKAGES)
    assert base != cache_key("bookworm", "http://other", PACKAGES)


def test_builders_are_registered() -> None:
    assert {"debian-12", "debian-12-nginx"} <= set(BUILDERS)
    assert callable(builder_for("debian-12-nginx"))


@pytest.mark.parametrize("name", ["corral-agent", "corral-boot"])
def test_guest_scripts_are_posix_sh(name: str) -> None:
    path = resources.files("corral.templates") / "guest" / "debian" / name
    text = path.read_text()
    import re

    assert not re.search(r"^\s*(usleep|busybox)\b", text, re.M)  # Debian has neither
    subprocess.run(["dash", "-n", "-c", text], check=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("busybox") is None,
                    reason="needs root (mounts, chroot) and a static busybox")
def test_provisioning_runs_in_a_chroot_of_any_path(tmp_path: Path) -> None:
    """The tree's path reaches the chroot as an argument, never as shell text: quotes, $ and
    spaces in it change nothing, and no mount outlives the run."""
    tree = tmp_path / "a tree with 'quotes' $HOME; and `spaces`"
    for name in ("bin", "proc", "sys", "dev", "etc"):
        (tree / name).mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "", tree / "bin" / "sh")
    _chroot_provision(tree, "echo provisioned > /marker; test -e /proc/self/stat; "
                            "test -c /dev/null; test -d /sys/class; echo ok >> /marker\n")
    assert (tree / "marker").read_text() == "provisioned\nok\n"
    assert not (tree / "tmp" / "corral-provision.sh").exists()
    assert not (tree / "etc" / "resolv.conf").exists()  # the host's was there only meanwhile
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    with pytest.raises(HostFailure, match="provisioning failed"):
        _chroot_provision(tree, "exit 4\n")
