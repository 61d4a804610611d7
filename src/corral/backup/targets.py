"""Where a chunk store lives: a directory (local disk, or a mounted NFS/CIFS share) or an
S3-compatible bucket. One small Protocol; every write is atomic (a reader sees the whole
object or nothing), which is what makes "manifest written last" a commit.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlparse

from corral.domain.errors import HostFailure, InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class MissingObject(Exception):
    """The key does not exist in the target."""


class Target(Protocol):
    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (replacing any previous object)."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; MissingObject when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix`` (a directory-like prefix ending in '/')."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""
        ...


class LocalTarget:
    """A directory: temp file + fsync + rename for every object, directory fsync after."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise InvalidInput(f"a backup directory must be an absolute path, not '{root}'")
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot use '{root}' as a backup target: {exc.strerror}") from None

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise InvalidInput(f"bad object key '{key}'")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with tmp.open("xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise MissingObject(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        for dirpath, _dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(self.root)
            for name in filenames:
                if not name.startswith(".tmp-"):
                    yield str(rel / name) if str(rel) != "." else name

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None


class S3Target:
    """An S3-compatible bucket (AWS, MinIO, Ceph RGW, SeaweedFS…) through boto3.

    Credentials come from the arguments, else boto3's usual chain (environment, profile).
    A PUT is atomic in S3, so no temp objects are needed.
    """

    def __init__(
        self, location: S3Location, access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.location = location
        kwargs: dict[str, Any] = {}
        if access_key and secret_key:
            kwargs.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
        self._s3: S3Client = boto3.client(
            "s3", endpoint_url=location.endpoint, region_name=location.region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"},
                          max_pool_connections=16),
            **kwargs,
        )

    @property
    def url(self) -> str:
        base = f"s3://{self.location.bucket}/{self.location.prefix}".rstrip("/")
        return base + (f"?endpoint={self.location.endpoint}" if self.location.endpoint else "")

    def _key(self, key: str) -> str:
        return f"{self.location.prefix.strip('/')}/{key}".lstrip("/")

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MissingObject(kwargs.get("Key", "")) from None
            raise HostFailure(f"S3 {what} on {self.url} failed: {exc}") from None
        except BotoCoreError as exc:
            raise HostFailure(f"S3 {what} on {self.url} failed: {exc}") from None

    def put(self, key: str, data: bytes) -> None:
        self._call("put", self._s3.put_object, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        response = self._call("get", self._s3.get_object, Key=self._key(key))
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self._s3.head_object, Key=self._key(key))
        except MissingObject:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix)
        strip = len(self._key(""))
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]
        except (ClientError, BotoCoreError) as exc:
            raise HostFailure(f"S3 list on {self.url} failed: {exc}") from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(MissingObject):
            self._call("delete", self._s3.delete_object, Key=self._key(key))

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (for self-hosted S3 servers)."""
        from botocore.exceptions import ClientError

        try:
            self._s3.head_bucket(Bucket=self.location.bucket)
        except ClientError:
            self._call("create bucket", self._s3.create_bucket)


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket/prefix?endpoint=http://host:port&region=…``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidInput(f"'{url}' is not an s3://bucket[/prefix] URL")
    query = parse_qs(parsed.query)
    return S3Location(
        bucket=parsed.netloc, prefix=parsed.path.strip("/"),
        endpoint=query.get("endpoint", [None])[0], region=query.get("region", [None])[0],
    )


def open_target(
    url: str, access_key: str | None = None, secret_key: str | None = None
) -> Target:
    """A target from its URL: ``/abs/dir`` or ``file:///abs/dir`` (local disk, NFS, CIFS)
    or ``s3://bucket/prefix?endpoint=…``."""
    if url.startswith("s3://"):
        return S3Target(parse_s3_url(url), access_key, secret_key)
    if url.startswith("file://"):
        url = urlparse(url).path
    if not url.startswith("/"):
        raise InvalidInput(
            f"backup target '{url}' is neither an absolute directory nor an s3:// URL"
        )
    return LocalTarget(Path(url))
