"""Every test under tests/system is a system test (real LXC, QEMU, nftables/tc, root): the
``system`` marker is put on each of them here, so ``-m "not system"`` leaves out all of
them, a new file that forgets its own ``pytestmark`` included."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.system)
