"""The source's corrald kill -9'd with a container stopped by its checkpoint dump, the dump
sent, the move not committed: after the restart it restores the dump (a process of the
container survives), never restarts the container from its disk. The one real migration
fault case in the suite (tests/system/faults_migrate.py; the others, the target's
``migrate.target.adopted`` among them, in ``bench/faults.py --kind migrate``). Skipped with
the machine's reason where CRIU does not work."""

from __future__ import annotations

import pytest

from corral.host import criu
from corral.templates.image import TemplateImage
from tests.system.faults_migrate import run_migrate_case, skip_reason
from tests.system.fixtures_template import tiny_template

__all__ = ["tiny_template"]


def _why_not() -> str:
    reason = skip_reason()
    if reason:
        return reason
    status = criu.probe()
    return "" if status.works else f"CRIU does not work here: {status.reason}"


pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(_why_not()), reason=_why_not())]


def test_a_restarted_source_restores_its_whole_dump(tiny_template: TemplateImage) -> None:
    run_migrate_case(tiny_template, "migrate.source.before_commit")
