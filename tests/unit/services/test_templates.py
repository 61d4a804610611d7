"""TemplateService.get keeps parsed metadata only while the file on disk is the same one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.domain.errors import NotFound
from corral.services.templates import TemplateService
from tests.integration.conftest import write_fake_template


def test_get_sees_a_replaced_or_removed_template(tmp_path: Path) -> None:
    write_fake_template(tmp_path, "t1")
    service = TemplateService(tmp_path)
    first = service.get("t1")
    assert service.get("t1") is first  # the same file: parsed once
    metadata = tmp_path / "t1" / "metadata.json"
    replaced = json.loads(metadata.read_text()) | {"version": "2"}
    staged = tmp_path / "t1" / "metadata.json.new"
    staged.write_text(json.dumps(replaced))
    staged.rename(metadata)  # as an import or rebuild installs it: a new file
    assert service.get("t1").metadata["version"] == "2"
    metadata.unlink()
    with pytest.raises(NotFound, match="unknown template 't1'"):
        service.get("t1")
