"""Installed templates and their builders."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.names import validate_name
from corral.services.events import EventBus
from corral.services.foreign import FOREIGN_TEMPLATE, foreign_metadata
from corral.services.operations import OperationContext, OperationManager
from corral.state.store import OperationRecord
from corral.templates.artifact import export_template, unpack_artifact
from corral.templates.image import METADATA, TemplateImage

Builder = Callable[[Path, Callable[[float, str], None] | None], TemplateImage]

# Template name -> "module:function" of its builder (imported only when a build is asked for).
BUILDERS: dict[str, str] = {
    "tiny": "corral.templates.builders.tiny:build_tiny",
    "debian-12": "corral.templates.builders.debian:build_debian",
    "debian-12-nginx": "corral.templates.builders.debian:build_debian_nginx",
}

# Template name -> "module:function" giving the content version its builder would make now
# (stored by the builder in metadata.json as build.content); see TemplateService.is_current.
CONTENT_VERSIONS: dict[str, str] = {
    "tiny": "corral.templates.builders.tiny:content_version",
}


def _resolve(target: str) -> Any:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def builder_for(name: str) -> Builder:
    target = BUILDERS.get(name)
    if target is None:
        known = ", ".join(sorted(BUILDERS))
        raise NotFound(f"no builder for template '{name}'; buildable: {known}")
    built: Builder = _resolve(target)
    return built


def content_version(name: str) -> str | None:
    """What ``name``'s builder would make now (None: its builder does not version content)."""
    target = CONTENT_VERSIONS.get(name)
    if target is None:
        return None
    version: str = _resolve(target)()
    return version


def installed_content(image: TemplateImage) -> str | None:
    build = image.metadata.get("build")
    content = build.get("content") if isinstance(build, dict) else None
    return content if isinstance(content, str) else None


class TemplateService:
    def __init__(self, directory: Path, events: EventBus | None = None,
                 operations: OperationManager | None = None) -> None:
        self.directory = directory
        self.events = events if events is not None else EventBus()
        """Where ``template.built``/``.imported``/``.deleted`` go (alone: a bus of its own)."""
        self.operations = operations
        """Runs ``submit_build`` (the daemon's; None: builds are called directly)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.users: Callable[[str], list[str]] = lambda name: []
        """Names of the instances made from a template (set by the daemon's wiring)."""
        self.on_removed: list[Callable[[str], None]] = []
        """Called with a template's name after it was deleted or replaced."""
        self.on_changed: list[Callable[[str], None]] = []
        """Called with a template's name after it was built, imported or deleted (the
        cluster publishes what this member holds)."""
        self.fetch: Callable[[str], bool] = lambda name: False
        """Install ``name`` from elsewhere (another cluster member); False: nowhere to get
        it from. Used by ``obtain`` only."""
        self._loaded: dict[Path, tuple[tuple[int, int], TemplateImage]] = {}
        """Parsed metadata by file identity (inode, mtime): every start asks for its
        template; an import or rebuild renames a new file in (a new identity)."""

    def list(self) -> list[TemplateImage]:
        found = []
        for child in sorted(self.directory.iterdir()):
            if (child / METADATA).is_file():
                found.append(TemplateImage.load(child))
        return found

    def get(self, name: str) -> TemplateImage:
        if name == FOREIGN_TEMPLATE:  # VMs from foreign images: no files, only metadata
            return TemplateImage(FOREIGN_TEMPLATE, self.directory / ".foreign",
                                 foreign_metadata())
        path = self.directory / name
        try:
            st = (path / METADATA).stat()
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            known = ", ".join(t.name for t in self.list()) or "none installed"
            hint = " (build it: corral template build tiny)" if name in BUILDERS else ""
            raise NotFound(f"unknown template '{name}'{hint}; available: {known}")
        identity = (st.st_ino, st.st_mtime_ns)
        cached = self._loaded.get(path)
        if cached is not None and cached[0] == identity:
            return cached[1]
        image = TemplateImage.load(path)
        self._loaded[path] = (identity, image)
        return image

    def obtain(self, name: str) -> TemplateImage:
        """``get``, but a template this host lacks is first fetched where ``fetch`` finds it
        (a cluster member holding it): what a create calls, so first use installs it."""
        try:
            return self.get(name)
        except NotFound:
            if name == FOREIGN_TEMPLATE or not self.fetch(name):
                raise
        return self.get(name)

    def _changed(self, name: str) -> None:
        for hook in self.on_changed:
            hook(name)

    def is_current(self, name: str) -> bool:
        """Whether ``name`` is installed as its builder would make it now: same content
        version (False when missing, or built by an older Corral or from other guest files
        or another kernel). A builder without content versions: installed counts as current."""
        validate_name(name, "template")
        builder_for(name)
        if not (self.directory / name / METADATA).is_file():
            return False
        wanted = content_version(name)
        if wanted is None:
            return True
        return installed_content(TemplateImage.load(self.directory / name)) == wanted

    def build(
        self, name: str, progress: Callable[[float, str], None] | None = None
    ) -> TemplateImage:
        """Build ``name`` into a temporary directory, then move it in place atomically."""
        validate_name(name, "template")
        builder = builder_for(name)
        staging = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=self.directory))
        try:
            builder(staging, progress)
            image = self._swap_in(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._changed(name)
        self.events.publish("template.built", name=name)
        return image

    def submit_build(self, name: str, if_outdated: bool = False) -> OperationRecord:
        """``build`` as an Operation; with ``if_outdated`` and ``name`` current, an operation
        with a distinct action (``template-current``: the caller can tell "nothing to build"
        from "built"). An unknown builder is a clear 404 now, not a failed operation later."""
        builder_for(name)
        if self.operations is None:
            raise RuntimeError("this template service runs no operations")
        if if_outdated and self.is_current(name):
            def current(ctx: OperationContext) -> None:
                ctx.progress(1.0, "up to date")

            return self.operations.submit("template-current", None, current)

        def work(ctx: OperationContext) -> None:
            self.build(name, ctx.progress)

        return self.operations.submit("template-build", None, work)

    def _swap_in(self, name: str, staging: Path) -> TemplateImage:
        """Rename a complete ``staging`` directory into place; the old version goes after."""
        final = self.directory / name
        old = None
        if final.exists():
            old = final.rename(self.directory / f".old-{name}-{staging.name}")
        staging.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            for hook in self.on_removed:
                hook(name)
        return TemplateImage.load(final)

    def size(self, image: TemplateImage) -> int:
        return sum(p.stat().st_size for p in image.directory.iterdir() if p.is_file())

    def digest(self, image: TemplateImage) -> str:
        declared = image.metadata.get("sha256")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, dict) and "rootfs.tar.gz" in declared:
            return str(declared["rootfs.tar.gz"])
        sha = hashlib.sha256()
        with image.rootfs.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        return sha.hexdigest()

    def delete(self, name: str) -> None:
        image = self.get(name)
        if not image.directory.is_relative_to(self.directory):
            raise InvalidInput(f"template '{name}' is outside the template store")
        users = self.users(name)
        if users:
            raise Conflict(
                f"template '{name}' is used by {', '.join(sorted(users))}; delete those first"
            )
        shutil.rmtree(image.directory)
        for hook in self.on_removed:
            hook(name)
        self._changed(name)
        self.events.publish("template.deleted", name=name)

    # The one-file artifact ---------------------------------------------------------------
    def import_file(
        self, artifact: Path, replace: bool = False,
        progress: Callable[[float, str], None] | None = None, origin: str | None = None,
    ) -> TemplateImage:
        """Verify and install ``artifact``; all or nothing (a staging directory renamed into
        place only once every checksum matched)."""
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=self.directory))
        try:
            metadata = unpack_artifact(artifact, staging, progress or (lambda f, p: None),
                                       origin)
            name = str(metadata["name"])
            final = self.directory / name
            if (final / METADATA).is_file() and not replace:
                raise Conflict(f"template '{name}' is already installed (delete it first, or "
                               "import with --replace)")
            # In use is fine (as for `template build`): instances own their disks, and the
            # base-image cache is dropped by the on_removed hooks.
            image = self._swap_in(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._changed(image.name)
        self.events.publish("template.imported", name=image.name)
        return image

    def import_upload(self, pieces: Iterable[bytes], replace: bool = False) -> TemplateImage:
        """``import_file`` for an artifact arriving in pieces (an HTTP upload): written to a
        file in the store (blocking: call it on a worker thread), verified in full, installed;
        the file is removed whatever happens."""
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".corral-template",
                                    dir=self.directory)
        upload = Path(name)
        try:
            with open(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
            return self.import_file(upload, replace, None, "the template file")
        finally:
            upload.unlink(missing_ok=True)

    def export_file(
        self, name: str, dest: Path, progress: Callable[[float, str], None] | None = None
    ) -> Path:
        """Write ``name`` as one ``.corral-template`` file at ``dest`` (atomic rename)."""
        image = self.get(name)
        export_template(image.directory, dest, progress or (lambda f, p: None))
        return dest

    def export_spooled(self, name: str) -> Path:
        """``name`` as a ``.corral-template`` in a new file of the store, for sending (the
        caller deletes it once sent); nothing is left behind if the export fails."""
        fd, path = tempfile.mkstemp(prefix=".export-", suffix=".corral-template",
                                    dir=self.directory)
        os.close(fd)
        dest = Path(path)
        try:
            return self.export_file(name, dest)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
