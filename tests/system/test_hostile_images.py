"""Foreign images whose header names another host file, made by the real qemu-img and
inspected by ``storage.foreign``: each refused with its reason before any conversion."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.storage.foreign import inspect_image

pytestmark = [pytest.mark.system]
if shutil.which("qemu-img") is None:
    pytestmark.append(pytest.mark.skip(reason="qemu-img is not installed"))


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_images_naming_host_files_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"host data" * 1000)
    _qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", str(secret),
              str(tmp_path / "backed.qcow2"), "1M")
    with pytest.raises(InvalidInput, match="backing file"):
        inspect_image(tmp_path / "backed.qcow2")
    _qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'},"
              "data_file_raw=on", str(tmp_path / "external.qcow2"), "1M")
    with pytest.raises(InvalidInput, match="external data file"):
        inspect_image(tmp_path / "external.qcow2")
    (tmp_path / "flat.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
        f'createType="monolithicFlat"\nRW 2048 FLAT "{secret}" 0\n')
    with pytest.raises(InvalidInput, match="extent in another file"):
        inspect_image(tmp_path / "flat.vmdk")
    _qemu_img("create", "-f", "qcow2", str(tmp_path / "plain.qcow2"), "1M")
    assert inspect_image(tmp_path / "plain.qcow2").format == "qcow2"
