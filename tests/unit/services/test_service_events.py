"""Services publish their own events (the API only calls them): templates imported, built
and deleted, storage pools created and deleted -- whoever calls the service, the events
stream sees the same thing. Also: an upload is written by the service and removed after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.services.core import Corral, Settings
from corral.templates.artifact import export_template
from tests.unit.templates.test_artifact import make_template


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    app = Corral(Settings(state_dir=tmp_path / "state", driver_mode="fake", node="n1"))
    app.start()
    yield app
    app.close()


def test_template_import_and_delete_are_published_by_the_service(
    corral: Corral, tmp_path: Path,
) -> None:
    artifact = tmp_path / "mini.corral-template"
    export_template(make_template(tmp_path / "src", "mini"), artifact)
    events = corral.events.subscribe()
    data = artifact.read_bytes()
    pieces = (data[i:i + 65536] for i in range(0, len(data), 65536))  # as an upload arrives
    assert corral.templates.import_upload(pieces).name == "mini"
    corral.templates.delete("mini")
    seen = [(e.type, e.data) for e in iter(lambda: events.get(0), None)]
    assert seen == [("template.imported", {"name": "mini"}),
                    ("template.deleted", {"name": "mini"})]
    assert [p.name for p in corral.templates.directory.iterdir()] == []  # no upload left


def test_a_refused_upload_leaves_no_file(corral: Corral) -> None:
    events = corral.events.subscribe()
    with pytest.raises(InvalidInput, match="the template file is not a valid"):
        corral.templates.import_upload([b"not a template"])
    assert [p.name for p in corral.templates.directory.iterdir()] == []
    assert events.get(0) is None


def test_an_export_is_spooled_in_the_store_and_left_to_the_caller(
    corral: Corral, tmp_path: Path,
) -> None:
    artifact = tmp_path / "mini.corral-template"
    export_template(make_template(tmp_path / "src", "mini"), artifact)
    corral.templates.import_file(artifact)
    spooled = corral.templates.export_spooled("mini")
    assert spooled.parent == corral.templates.directory and spooled.stat().st_size > 0
    spooled.unlink()


def test_pool_create_and_delete_are_published_by_the_service(
    corral: Corral, tmp_path: Path,
) -> None:
    events = corral.events.subscribe()
    corral.storage.create_pool("extra", "dir", str(tmp_path / "extra"), None, None)
    corral.storage.delete_pool("extra")
    seen = [(e.type, e.data) for e in iter(lambda: events.get(0), None)]
    assert seen == [("storage.pool.created", {"pool": "extra", "driver": "dir"}),
                    ("storage.pool.deleted", {"pool": "extra"})]
