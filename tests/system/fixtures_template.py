"""Session fixtures shared by the system tests: the tiny template, built once per session.

Import the fixtures into a test module (``from tests.system.fixtures_template import
tiny_template``); pytest then finds them by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corral.templates.builders.tiny import build_tiny
from corral.templates.image import TemplateImage


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory: pytest.TempPathFactory) -> TemplateImage:
    """The busybox ``tiny`` template (rootfs.tar.gz, vmlinux, initrd.img, metadata.json)."""
    return build_tiny(tmp_path_factory.mktemp("template-tiny"))


def install_templates(state: Path, tiny: TemplateImage, q35_dir: Path) -> None:
    """A daemon's templates under ``state``: ``tiny`` and ``tinyq35`` (the same template on
    the q35 machine, built in ``q35_dir``: PCIe hot-plug of NICs and disks)."""
    templates = state / "templates"
    shutil.copytree(tiny.directory, templates / "tiny")
    q35 = build_tiny(q35_dir, machine="q35")
    shutil.copytree(q35.directory, templates / "tinyq35")
    meta = json.loads((templates / "tinyq35" / "metadata.json").read_text())
    meta["name"] = "tinyq35"
    (templates / "tinyq35" / "metadata.json").write_text(json.dumps(meta))
