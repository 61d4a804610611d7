"""The CRIU probe says what ``criu check`` says (run here, on this host's real CRIU)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from corral.host import criu, features


def test_probe_reports_criu_checks_verdict() -> None:
    path = criu.binary()
    if path is None:
        pytest.skip("no CRIU on this host (scripts/install-criu.sh builds one)")
    if os.geteuid() != 0:
        pytest.skip("criu check needs root")
    proc = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60,
                          check=False)
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    version = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    status = criu.probe()
    assert status.path == path
    assert status.works is (proc.returncode == 0)
    assert last in status.verdict
    assert status.version is not None and status.version in version
    feature = features.probe_all()["criu"]  # what `corral host info` shows
    assert feature.available is status.works
    assert feature.detail == status.reason
    assert status.version in feature.detail and last in feature.detail


def test_the_built_criu_is_preferred_over_path(monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.access(criu.BUILT, os.X_OK):
        pytest.skip(f"{criu.BUILT} not built here (scripts/install-criu.sh)")
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    assert criu.binary() == criu.BUILT


def test_missing_criu_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(criu, "BUILT", str(tmp_path / "criu"))
    monkeypatch.setenv("PATH", str(tmp_path))
    if criu.binary() is not None:
        pytest.skip("a criu in /usr/sbin or /sbin cannot be hidden")
    status = criu.probe()
    assert not status.works and status.reason == "criu is not installed"
    gone = criu.probe(str(tmp_path / "criu"))
    assert not gone.works and "did not run" in gone.verdict and "criu" in gone.reason


def test_the_kernel_feature_cache_directory_is_roots_own(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the directory is root's: needs root")
    where = tmp_path / "corral-criu"
    monkeypatch.setattr(criu, "KDAT_DIR", where)
    where.mkdir(mode=0o777)  # taken by someone else first, with a cache of their own
    (where / "criu.kdat").write_text("forged")
    os.chown(where, 65534, 65534)
    criu.kdat_dir()
    st = where.lstat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700) and not any(where.iterdir())
    (where / "criu.kdat").write_text("criu's own")  # right as it is: kept
    criu.kdat_dir()
    assert (where / "criu.kdat").read_text() == "criu's own"
    where.rename(tmp_path / "aside")
    where.symlink_to(tmp_path / "aside")  # not a directory of its own
    criu.kdat_dir()
    assert where.is_dir() and not where.is_symlink() and not any(where.iterdir())
