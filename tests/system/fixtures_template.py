"""Session fixtures shared by the system tests: the tiny template, built once per session.

Import the fixtures into a test module (``from tests.system.fixtures_template import
tiny_template``); pytest then finds them by name.
"""

from __future__ import annotations

import pytest

from corral.templates.builders.tiny import build_tiny
from corral.templates.image import TemplateImage


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory: pytest.TempPathFactory) -> TemplateImage:
    """The busybox ``tiny`` template (rootfs.tar.gz, vmlinux, initrd.img, metadata.json)."""
    return build_tiny(tmp_path_factory.mktemp("template-tiny"))
