"""Chunk naming, compression and optional encryption: the bytes that go into a store.

A chunk's name is ``sha256(plaintext)`` for a plain store. An encrypted store names chunks by
``HMAC-SHA256(id_key, plaintext)`` so names do not reveal the hash of known content, and seals
``zstd(plaintext)`` with AES-256-GCM (random 96-bit nonce, the chunk name as associated data,
so a blob cannot be swapped for another name). Both keys are derived from one key file.

Blob layout: ``b"CZ"`` + version byte ``1`` + mode byte (``0`` plain, ``1`` AES-GCM)
+ (nonce, 12 bytes, when encrypted) + payload.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import InvalidInput

MAGIC = b"CZ\x01"
PLAIN, SEALED = 0, 1
KEY_BYTES = 32
ZSTD_LEVEL = 3


class CorruptChunk(Exception):
    """A blob that does not decode to content matching its name."""


def generate_key_file(path: Path) -> None:
    """Write a new random key (hex, 0600); refuse to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(KEY_BYTES).hex() + "\n")


@dataclass(frozen=True)
class Codec:
    """Names, seals and opens chunks; ``key`` None means a plain (unencrypted) store."""

    key: bytes | None = None
    level: int = ZSTD_LEVEL

    @classmethod
    def from_key_file(cls, path: Path | None) -> Codec:
        if path is None:
            return cls()
        try:
            text = path.read_bytes().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read key file '{path}': {exc.strerror}") from None
        try:
            key = bytes.fromhex(text.decode())
        except (ValueError, UnicodeDecodeError):
            key = text
        if len(key) < KEY_BYTES:
            raise InvalidInput(
                f"key file '{path}' holds {len(key)} bytes; a key needs at least {KEY_BYTES}"
            )
        return cls(key=key)

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def _derived(self, label: bytes) -> bytes:
        assert self.key is not None
        return hmac.new(self.key, b"corral-backup/" + label, hashlib.sha256).digest()

    def fingerprint(self) -> str | None:
        """Identifies the key (not secret): stores remember it to refuse a wrong key early."""
        return None if self.key is None else self._derived(b"fingerprint").hex()[:16]

    def name(self, data: bytes) -> str:
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._derived(b"id"), data, hashlib.sha256).hexdigest()

    def seal(self, name: str, data: bytes) -> bytes:
        # zstandard and cryptography load with the first backup, not with the daemon
        import zstandard
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        compressed = zstandard.ZstdCompressor(level=self.level).compress(data)
        if self.key is None:
            return MAGIC + bytes([PLAIN]) + compressed
        nonce = os.urandom(12)
        sealed = AESGCM(self._derived(b"enc")).encrypt(nonce, compressed, name.encode())
        return MAGIC + bytes([SEALED]) + nonce + sealed

    def open(self, name: str, blob: bytes) -> bytes:
        """The plaintext of ``blob``; CorruptChunk unless it decodes and matches ``name``."""
        import zstandard
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if blob[:3] != MAGIC or len(blob) < 4:
            raise CorruptChunk("not a chunk blob (bad header)")
        mode, body = blob[3], blob[4:]
        if mode == SEALED:
            if self.key is None:
                raise CorruptChunk("chunk is encrypted and no key was given")
            try:
                body = AESGCM(self._derived(b"enc")).decrypt(body[:12], body[12:], name.encode())
            except InvalidTag:
                raise CorruptChunk("authentication failed (damaged, or another key)") from None
        elif mode != PLAIN:
            raise CorruptChunk(f"unknown chunk mode {mode}")
        try:
            data = zstandard.ZstdDecompressor().decompress(body)
        except zstandard.ZstdError as exc:
            raise CorruptChunk(f"does not decompress: {exc}") from None
        if self.name(data) != name:
            raise CorruptChunk("content does not match its name")
        return data
