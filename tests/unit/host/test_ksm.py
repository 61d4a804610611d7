"""KSM detection and switching, on a directory laid out as /sys/kernel/mm/ksm, and this
host's own (read only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.domain.errors import Unsupported
from corral.host import ksm


def fake_ksm(root: Path, run: str = "0", shared: int = 0, sharing: int = 0) -> Path:
    root.mkdir()
    for name, value in (("run", run), ("pages_shared", shared), ("pages_sharing", sharing)):
        (root / name).write_text(f"{value}\n")
    return root


def test_a_kernel_without_ksm_says_so(tmp_path: Path) -> None:
    found = ksm.status(tmp_path / "none")
    assert not found.available and "no KSM" in found.detail
    with pytest.raises(Unsupported, match="no KSM"):
        ksm.set_running(True, tmp_path / "none")


def test_pages_shared_and_saved(tmp_path: Path) -> None:
    root = fake_ksm(tmp_path / "ksm", run="1", shared=10, sharing=256)
    found = ksm.status(root)
    assert found.available and found.running
    assert found.saved_bytes == 256 * os.sysconf("SC_PAGE_SIZE")
    assert found.to_dict()["saved_mib"] == round(found.saved_bytes / 2**20, 1)


def test_switching(tmp_path: Path) -> None:
    root = fake_ksm(tmp_path / "ksm")
    ksm.set_running(True, root)
    assert (root / "run").read_text() == "1" and ksm.status(root).running
    ksm.set_running(False, root)
    assert (root / "run").read_text() == "0" and not ksm.status(root).running


def test_this_host_is_detected_not_assumed() -> None:
    assert ksm.status().available == (ksm.KSM / "run").is_file()
