"""A chunk store on a Target: ``config.json``, ``chunks/<2 hex>/<name>``, ``manifests/<id>.json``.

``config.json`` records whether the store is encrypted and the key's fingerprint, so a
backup with the wrong key (or without one) is refused before it writes anything.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral.backup.crypto import Codec, CorruptChunk
from corral.backup.manifest import Manifest, chunk_key, manifest_key
from corral.backup.targets import MissingObject, Target
from corral.domain.errors import Conflict, InvalidInput, NotFound

CONFIG = "config.json"
STORE_FORMAT = 1
VerifyProgress = Callable[[int, int], None]  # chunks done, chunks total


@dataclass
class VerifyReport:
    backups: int = 0
    chunks_checked: int = 0
    damaged_chunks: dict[str, str] = field(default_factory=dict)  # name -> reason
    damaged_backups: list[str] = field(default_factory=list)
    unreadable_manifests: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.damaged_backups or self.unreadable_manifests)


class ChunkStore:
    def __init__(self, target: Target, codec: Codec) -> None:
        self.target = target
        self.codec = codec
        self._known: set[str] | None = None
        self._lock = threading.Lock()

    # Store configuration --------------------------------------------------------------
    def open(self, create: bool = True) -> None:
        """Check (or, the first time, write) the store's configuration against the codec."""
        try:
            config = json.loads(self.target.get(CONFIG))
        except MissingObject:
            if not create:
                raise NotFound(f"no backup store at {self.target.url}") from None
            config = {"format": STORE_FORMAT, "encrypted": self.codec.encrypted,
                      "key_fingerprint": self.codec.fingerprint()}
            self.target.put(CONFIG, json.dumps(config).encode())
        if config.get("format") != STORE_FORMAT:
            raise InvalidInput(f"backup store at {self.target.url} has an unknown format")
        if config.get("encrypted") and not self.codec.encrypted:
            raise InvalidInput(f"backup store at {self.target.url} is encrypted: give its key")
        if not config.get("encrypted") and self.codec.encrypted:
            raise InvalidInput(
                f"backup store at {self.target.url} is not encrypted; it cannot take a key "
                "(use another target for encrypted backups)"
            )
        if config.get("key_fingerprint") != self.codec.fingerprint():
            raise InvalidInput(f"the key does not match the backup store at {self.target.url}")

    # Chunks ----------------------------------------------------------------------------
    def known_chunks(self) -> set[str]:
        """Names of the chunks in the store (listed once, then kept up to date)."""
        with self._lock:
            if self._known is None:
                self._known = {key.rsplit("/", 1)[-1] for key in self.target.list("chunks/")}
            return self._known

    def has_chunk(self, name: str) -> bool:
        return name in self.known_chunks()

    def put_chunk(self, name: str, data: bytes) -> int:
        """Store a chunk unless present; the bytes written (0 when deduplicated)."""
        if self.has_chunk(name):
            return 0
        blob = self.codec.seal(name, data)
        self.target.put(chunk_key(name), blob)
        with self._lock:
            assert self._known is not None
            self._known.add(name)
        return len(blob)

    def get_chunk(self, name: str) -> bytes:
        """The chunk's verified plaintext; CorruptChunk when missing or damaged."""
        try:
            blob = self.target.get(chunk_key(name))
        except MissingObject:
            raise CorruptChunk("missing") from None
        return self.codec.open(name, blob)

    def delete_chunks(self, names: Iterable[str]) -> int:
        count = 0
        for name in names:
            self.target.delete(chunk_key(name))
            count += 1
            with self._lock:
                if self._known is not None:
                    self._known.discard(name)
        return count

    # Manifests -------------------------------------------------------------------------
    def commit(self, manifest: Manifest) -> None:
        self.target.put(manifest.key, manifest.to_json())

    def manifest(self, backup_id: str) -> Manifest:
        try:
            return Manifest.from_json(self.target.get(manifest_key(backup_id)))
        except MissingObject:
            raise NotFound(f"no backup '{backup_id}' in {self.target.url}") from None

    def manifest_ids(self) -> list[str]:
        return sorted(
            key.removeprefix("manifests/").removesuffix(".json")
            for key in self.target.list("manifests/") if key.endswith(".json")
        )

    def manifests(self) -> list[Manifest]:
        """Every committed backup, oldest first (unreadable manifests are skipped)."""
        found = []
        for backup_id in self.manifest_ids():
            try:
                found.append(self.manifest(backup_id))
            except (InvalidInput, NotFound):
                continue
        return sorted(found, key=lambda m: m.created_at)

    def delete_manifest(self, backup_id: str) -> None:
        if not self.target.exists(manifest_key(backup_id)):
            raise NotFound(f"no backup '{backup_id}' in {self.target.url}")
        self.target.delete(manifest_key(backup_id))

    # Maintenance -----------------------------------------------------------------------
    def garbage_collect(self) -> tuple[int, int]:
        """Delete chunks no manifest names (left by deleted or interrupted backups).

        The caller must hold the target's lock: a backup running meanwhile could have
        stored chunks its manifest does not name yet. Returns (deleted, kept)."""
        referenced: set[str] = set()
        for backup_id in self.manifest_ids():
            try:
                referenced |= self.manifest(backup_id).names
            except InvalidInput:
                raise Conflict(
                    f"manifest '{backup_id}' is unreadable: refusing to collect garbage "
                    "(chunks it names could be deleted)"
                ) from None
        with self._lock:
            self._known = None
        present = set(self.known_chunks())
        unused = present - referenced
        self.delete_chunks(sorted(unused))
        return len(unused), len(present) - len(unused)

    def verify(
        self, backup_ids: list[str] | None = None,
        progress: VerifyProgress | None = None,
    ) -> VerifyReport:
        """Read every chunk the backups name once, decode and check it against its name.
        A backup is damaged when any chunk it names is missing or does not verify."""
        report = VerifyReport()
        manifests: list[Manifest] = []
        for backup_id in backup_ids if backup_ids is not None else self.manifest_ids():
            try:
                manifests.append(self.manifest(backup_id))
            except InvalidInput:
                report.unreadable_manifests.append(backup_id)
        report.backups = len(manifests)
        names = sorted(set().union(*(m.names for m in manifests))) if manifests else []
        for number, name in enumerate(names, 1):
            try:
                self.get_chunk(name)
            except CorruptChunk as exc:
                report.damaged_chunks[name] = str(exc)
            report.chunks_checked += 1
            if progress is not None:
                progress(number, len(names))
        report.damaged_backups = sorted(
            m.id for m in manifests if m.names & report.damaged_chunks.keys()
        )
        return report
