"""The Debian packaging's bounded check (no build): scripts parse, the package depends on
every system tool the host install needs, build-deb.sh refuses bad input before building.
The full build + install/upgrade/purge in a container: tests/system/test_deb_package.py
(CORRAL_SLOW_TESTS=1)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "packaging" / "debian"
# What the host install lists for building or for development, not for running Corral.
BUILD_ONLY = {"python3-venv", "python3-dev"}


def _field(control: str, name: str) -> set[str]:
    match = re.search(rf"^{name}:(.*(?:\n .*)*)", control, re.M)
    assert match, name
    names = set()
    for item in match.group(1).replace("\n", " ").split(","):
        for alternative in item.split("|"):
            word = alternative.strip().split(" ")[0]
            if word and not word.startswith("$"):
                names.add(word)
    return names


def test_depends_cover_the_host_install() -> None:
    control = (DEBIAN / "control").read_text()
    shipped = _field(control, "Depends") | _field(control, "Recommends")
    wanted = {line.strip() for line in (ROOT / "packaging/apt-packages.txt").read_text()
              .splitlines() if line.strip()} - BUILD_ONLY
    assert wanted <= shipped, f"not in Depends/Recommends: {sorted(wanted - shipped)}"


@pytest.mark.parametrize("script", ["corral.postinst", "corral.prerm", "corral.postrm"])
def test_maintainer_scripts_parse_and_never_pip(script: str) -> None:
    text = (DEBIAN / script).read_text()
    assert "#DEBHELPER#" in text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\bpip3?\b", line)]
    subprocess.run(["sh", "-n", str(DEBIAN / script)], check=True)


def test_shell_scripts_parse() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts/build-deb.sh")], check=True)
    subprocess.run(["bash", "-n", str(ROOT / "packaging/completion/corral.bash")], check=True)


def test_build_deb_refuses_bad_input_before_building(tmp_path: Path) -> None:
    if shutil.which("dh_virtualenv") is None:
        pytest.skip("dh-virtualenv is not installed")
    script = str(ROOT / "scripts/build-deb.sh")
    bad = subprocess.run([script, "--frobnicate"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
    bad = subprocess.run([script, "--out", str(tmp_path), "--version", "1.0 beta"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "not a Debian version" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_packaged_unit_runs_the_packaged_daemon() -> None:
    unit = (ROOT / "packaging/corrald.service").read_text()
    # build-deb.sh rewrites this one path to /usr/bin/corrald (the package's link)
    assert unit.count("/usr/local/bin/corrald") == 1
    assert "KillMode=process" in unit  # an upgrade's restart leaves guests running


def test_uninstall_removes_what_setup_installs() -> None:
    """scripts/uninstall.sh (the README's way to undo setup.sh) parses, refuses an unknown
    option before doing anything, and removes every file setup.sh installs or links."""
    uninstall = ROOT / "scripts/uninstall.sh"
    subprocess.run(["bash", "-n", str(uninstall)], check=True)
    bad = subprocess.run([str(uninstall), "--frobnicate"], capture_output=True, text=True,
                         check=False, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
    setup = (ROOT / "scripts/setup.sh").read_text()
    installed = re.findall(r"^(?:install|ln) .* (/\S+)$", setup, re.MULTILINE)
    installed += re.findall(r'^(?:prefix|state|defaults)=(/\S+)$', setup, re.MULTILINE)
    assert len(installed) >= 8, installed
    text = uninstall.read_text()
    for path in installed:
        assert path in text, path
    assert "/usr/local/share/man/man1/corral" in text  # docgen's man pages
    assert "scripts/uninstall.sh" in (ROOT / "README.md").read_text()


def test_purge_finds_guests_by_executable_and_only_in_its_mount_namespace() -> None:
    """corrald names QEMU processes corral-<instance> (``-name …,process=``): the purge sweep
    must match the executable, not /proc/PID/comm, and leave other mount namespaces' guests
    and loop devices (a container's /var/lib/corral) alone."""
    text = (DEBIAN / "corral.postrm").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert '"$proc/comm"' not in code and '"$proc/exe"' in code
    assert '"$proc/ns/mnt"' in code
    assert "BACK-INO" in code and "stat -c %i" in code
