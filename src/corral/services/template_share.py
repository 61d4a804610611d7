"""Templates shared by the members of a cluster: each member publishes the templates it
holds (name, content digest, size, kinds) in the cluster store; a create on a member that
lacks the template fetches it from one that holds it, first use only.

Publication: at once when a template is built, imported or deleted here
(``TemplateService.on_changed``), and in full with every reconcile of the cluster service
(what a change made while etcd was away missed). A template whose metadata lists no file
checksums (made by hand, never exported) is not published: no one could verify a copy.

Fetch (``fetch``): under a lock per template name (concurrent first uses on this member fetch
once; the others find it installed), from the online members holding it, over their pinned
TLS API as a member (``Forwarder.download``: streamed into a file in the template store,
never whole in memory). Before anything is installed, the artifact's ``metadata.json`` must
give the content digest the holder published (``artifact_digest``); then the ordinary import
(``TemplateService.import_file``) checks every file against that metadata and walks the root
filesystem archive with its hostile-input checks. A mismatch is a clear error and the
downloaded file is removed: nothing is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.cluster.etcd import ClusterUnavailable
from corral.cluster.store import ClusterStore, Member, PublishedTemplate
from corral.domain.errors import CorralError, HostFailure, InvalidInput, NotFound
from corral.domain.names import validate_name
from corral.services.forwarding import Forwarder
from corral.services.templates import TemplateService
from corral.templates.artifact import artifact_digest, read_metadata, validate_metadata
from corral.templates.image import TemplateImage

log = logging.getLogger("corral.templates.share")


@dataclass
class ClusterTemplate:
    """One template content (name + digest) and the members holding it."""

    name: str
    sha256: str
    size: int
    kinds: list[str]
    version: str
    os: str
    arch: str
    nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateRow:
    """A line of `template list`: installed here (``image``) or only on other members
    (``published``); ``nodes``: the members holding this content."""

    image: TemplateImage | None
    published: ClusterTemplate | None
    nodes: list[str]


def content_digest(image: TemplateImage) -> str | None:
    """The digest a member publishes for ``image`` (None: its metadata lists no checksums)."""
    try:
        validate_metadata(image.metadata, image.name)
    except InvalidInput:
        return None
    return artifact_digest(image.metadata)


class TemplateShare:
    def __init__(self, node: str, templates: TemplateService,
                 store: Callable[[], ClusterStore], members: Callable[[], list[Member]],
                 forwarder: Forwarder) -> None:
        self.node = node
        self.templates = templates
        self.store = store
        self.members = members
        self.forwarder = forwarder
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetched = 0
        """Templates fetched from other members since start (tests count first uses)."""

    # Publish -----------------------------------------------------------------------------
    def describe(self, image: TemplateImage) -> PublishedTemplate | None:
        digest = content_digest(image)
        if digest is None:
            return None
        return PublishedTemplate(
            name=image.name, node=self.node, sha256=digest, size=self.templates.size(image),
            kinds=tuple(str(k) for k in image.metadata.get("kinds", ["ct", "vm"])),
            version=image.version, os=str(image.metadata.get("os", "")),
            arch=str(image.metadata.get("arch", "")))

    def publish_all(self) -> None:
        """Publish every template held here (and withdraw the others): reconcile."""
        store = self.store()
        if not store.clustered:
            return
        found = [d for d in (self.describe(i) for i in self.templates.list()) if d is not None]
        store.publish_templates(self.node, found, complete=True)

    def changed(self, name: str) -> None:
        """``name`` was built, imported or deleted here: say so now (a failure is repaired
        by the next reconcile)."""
        store = self.store()
        if not store.clustered:
            return
        try:
            try:
                image = self.templates.get(name)
            except NotFound:
                store.withdraw_template(self.node, name)
                return
            described = self.describe(image)
            if described is None:
                store.withdraw_template(self.node, name)
            else:
                store.publish_templates(self.node, [described], complete=False)
        except ClusterUnavailable as exc:
            log.warning("template '%s' not published in the cluster store: %s", name,
                        exc.message)

    # Read --------------------------------------------------------------------------------
    def cluster_templates(self) -> list[ClusterTemplate]:
        """Every template content published in the cluster with its holders (none on one
        host; an unreachable store: none, local reads go on)."""
        store = self.store()
        if not store.clustered:
            return []
        try:
            published = store.templates()
        except ClusterUnavailable as exc:
            log.warning("listing the cluster's templates: %s", exc.message)
            return []
        grouped: dict[tuple[str, str], ClusterTemplate] = {}
        for t in sorted(published, key=lambda t: (t.name, t.node)):
            entry = grouped.setdefault((t.name, t.sha256), ClusterTemplate(
                t.name, t.sha256, t.size, list(t.kinds), t.version, t.os, t.arch))
            entry.nodes.append(t.node)
        return list(grouped.values())

    def rows(self, name: str | None = None) -> list[TemplateRow]:
        """This host's templates (named ``name``), each with the members holding the same
        content, then the cluster's templates not installed here."""
        shared = [c for c in self.cluster_templates() if name in (None, c.name)]
        by_content = {(c.name, c.sha256): c for c in shared}
        found = []
        held = set()
        for image in self.templates.list():
            if name not in (None, image.name):
                continue
            digest = content_digest(image)
            held.add((image.name, digest))
            same = by_content.get((image.name, digest or ""))
            found.append(TemplateRow(image, same, sorted(
                {self.node, *(same.nodes if same else [])})))
        found += [TemplateRow(None, c, c.nodes) for c in shared if (c.name, c.sha256) not in held]
        return found

    def holders(self, name: str) -> set[str]:
        """The members holding a template named ``name`` (placement's tie-breaker)."""
        try:
            return {t.node for t in self.store().templates(name)}
        except ClusterUnavailable:
            return set()

    # Fetch -------------------------------------------------------------------------------
    def fetch(self, name: str) -> bool:
        """Install ``name`` from a member holding it; False if this host is in no cluster or
        no member publishes it. Errors (a checksum mismatch, no holder reachable) raise."""
        store = self.store()
        if not store.clustered:
            return False
        validate_name(name, "template")
        with self._lock_for(name):
            if (self.templates.directory / name / "metadata.json").is_file():
                return True  # a concurrent first use installed it meanwhile
            published = [t for t in store.templates(name) if t.node != self.node]
            if not published:
                return False
            online = {m.node: m for m in self.members() if m.online}
            reachable = [t for t in published if t.node in online]
            if not reachable:
                held = ", ".join(sorted(t.node for t in published))
                raise CorralError(f"template '{name}' is not installed here and the members "
                                  f"holding it ({held}) are offline")
            failures = []
            for record in reachable:
                try:
                    self._fetch_from(record, online[record.node])
                    return True
                except InvalidInput:
                    raise  # a copy that does not verify: said as it is, not retried
                except CorralError as exc:
                    failures.append(exc.message)
            raise CorralError(f"template '{name}' could not be fetched: "
                              + "; ".join(failures))

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _fetch_from(self, record: PublishedTemplate, member: Member) -> None:
        origin = f"template '{record.name}' from member '{record.node}'"
        log.info("fetching %s (%d bytes)", origin, record.size)
        fd, path = tempfile.mkstemp(prefix=".fetch-", suffix=".corral-template",
                                    dir=self.templates.directory)
        download = Path(path)
        try:
            with open(fd, "wb") as out:
                self.forwarder.download(member.info,
                                        f"/api/v1/templates/{record.name}/export", out)
            try:
                metadata = read_metadata(download)
            except InvalidInput as exc:
                raise InvalidInput(f"{origin}: {exc.message}") from None
            got = artifact_digest(metadata)
            if metadata.get("name") != record.name or got != record.sha256:
                raise InvalidInput(
                    f"checksum mismatch: {origin} has content sha256 {got[:16]}… (name "
                    f"'{metadata.get('name')}'), the cluster store says {record.sha256[:16]}…; "
                    "nothing was installed")
            try:
                self.templates.import_file(download, replace=False, origin=origin)
            except OSError as exc:  # with an errno: this host's disk, not the copy
                raise HostFailure(f"{origin}: {exc}") from exc
            self.fetched += 1
        finally:
            with contextlib.suppress(OSError):
                os.unlink(download)
