"""The tiny template's content version: an installed template built from other guest files,
another builder or another kernel is outdated; `template build tiny --if-outdated` relies on
``TemplateService.is_current``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.services.templates import TemplateService
from corral.templates.builders import tiny


def _install(store: Path, content: str | None) -> None:
    directory = store / "tiny"
    directory.mkdir(parents=True)
    metadata: dict[str, object] = {"name": "tiny", "version": "1", "os": "busybox",
                                   "arch": "x86_64", "files": {}}
    if content is not None:
        metadata["build"] = {"content": content}
    (directory / "metadata.json").write_text(json.dumps(metadata))


def test_content_version_follows_kernel_machine_and_guest_files() -> None:
    base = tiny.content_version("6.1.0-1-amd64")
    assert base == tiny.content_version("6.1.0-1-amd64")  # deterministic
    assert base != tiny.content_version("6.1.0-2-amd64")
    assert base != tiny.content_version("6.1.0-1-amd64", machine="q35")

    def upgraded(name: str) -> bytes:  # an upgrade that changed /sbin/corral-net
        return tiny.guest_file(name) + (b"\n# new" if name == "corral-net" else b"")

    assert tiny.content_version("6.1.0-1-amd64", read_guest=upgraded) != base


def test_is_current_compares_the_installed_version(tmp_path: Path) -> None:
    store = TemplateService(tmp_path / "store")
    assert not store.is_current("tiny")  # missing
    _install(store.directory, None)
    assert not store.is_current("tiny")  # built before versions existed
    (store.directory / "tiny" / "metadata.json").unlink()
    (store.directory / "tiny").rmdir()
    _install(store.directory, "0" * 64)
    assert not store.is_current("tiny")  # built from other files
    meta = json.loads((store.directory / "tiny" / "metadata.json").read_text())
    meta["build"]["content"] = tiny.content_version()
    (store.directory / "tiny" / "metadata.json").write_text(json.dumps(meta))
    assert store.is_current("tiny")


@pytest.mark.skipif(not tiny.BUSYBOX.is_file() or not list(Path("/boot").glob("vmlinuz-*")),
                    reason="needs busybox-static and a host kernel")
def test_a_fresh_build_is_current_and_records_its_version(tmp_path: Path) -> None:
    store = TemplateService(tmp_path / "store")
    image = store.build("tiny")
    assert image.metadata["build"]["content"] == tiny.content_version()
    assert store.is_current("tiny")
