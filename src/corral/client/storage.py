"""Client calls for templates-as-files, storage pools, disks, clones and conversion.

A mixin of ``CorralClient`` (kept apart so client.py stays small); it uses the client's
plumbing (``_request``, ``_model``, ``_models``, ``_http``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from corral.wire.models import OperationModel, TemplateModel
from corral.wire.storage import (
    AddDiskRequest,
    CloneRequest,
    ConvertRequest,
    CreatePoolRequest,
    DiskChangeModel,
    DiskModel,
    PoolModel,
    ResizeDiskRequest,
)

if TYPE_CHECKING:
    import httpx

M = TypeVar("M", bound=BaseModel)
_CHUNK = 1 << 20


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(_CHUNK), b"")


class StorageCalls:
    if TYPE_CHECKING:
        @property
        def _http(self) -> httpx.Client: ...

        def _request(self, method: str, path: str, **kwargs: Any) -> Any: ...

        def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M: ...

        def _models(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]: ...

    # Templates as files ---------------------------------------------------------------
    def import_template(self, path: Path, replace: bool = False) -> TemplateModel:
        if not path.is_file():
            from corral.client.client import ApiError

            raise ApiError(0, "invalid", f"'{path}' is not a file")
        return self._model(
            TemplateModel, "POST", "/api/v1/templates/import", params={"replace": replace},
            content=_chunks(path), headers={"Content-Type": "application/octet-stream"},
            timeout=None,
        )

    def export_template(self, name: str, dest: Path) -> Path:
        """Download ``name`` as a ``.corral-template`` file to ``dest`` (atomic rename)."""
        from corral.client.client import ApiError

        partial = dest.with_name(f".{dest.name}.partial")
        try:
            with self._http.stream("GET", f"/api/v1/templates/{name}/export",
                                   timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    body = response.json()
                    raise ApiError(response.status_code, str(body.get("error", "error")),
                                   str(body.get("message", response.text)))
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    def delete_template(self, name: str) -> None:
        self._request("DELETE", f"/api/v1/templates/{name}")

    # Pools ----------------------------------------------------------------------------
    def list_pools(self) -> list[PoolModel]:
        return self._models(PoolModel, "GET", "/api/v1/storage/pools")

    def get_pool(self, name: str) -> PoolModel:
        return self._model(PoolModel, "GET", f"/api/v1/storage/pools/{name}")

    def create_pool(self, request: CreatePoolRequest) -> PoolModel:
        return self._model(PoolModel, "POST", "/api/v1/storage/pools",
                           json=request.model_dump(), timeout=None)

    def delete_pool(self, name: str) -> None:
        self._request("DELETE", f"/api/v1/storage/pools/{name}")

    # Disks, clones, conversion ------------------------------------------------------------
    def list_disks(self, ref: str) -> list[DiskModel]:
        return self._models(DiskModel, "GET", f"/api/v1/instances/{ref}/disks")

    def add_disk(self, ref: str, request: AddDiskRequest) -> DiskChangeModel:
        return self._model(DiskChangeModel, "POST", f"/api/v1/instances/{ref}/disks",
                           json=request.model_dump(), timeout=None)

    def remove_disk(self, ref: str, name: str) -> DiskChangeModel:
        return self._model(DiskChangeModel, "DELETE", f"/api/v1/instances/{ref}/disks/{name}",
                           timeout=None)

    def resize_disk(self, ref: str, name: str, size: str) -> DiskChangeModel:
        return self._model(DiskChangeModel, "POST",
                           f"/api/v1/instances/{ref}/disks/{name}/resize",
                           json=ResizeDiskRequest(size=size).model_dump(), timeout=None)

    def vnc(self, ref: str) -> dict[str, str]:
        """{"socket": path on the daemon's host, "host": its hostname}."""
        found: dict[str, str] = self._request("GET", f"/api/v1/instances/{ref}/vnc")
        return found

    def clone_instance(self, ref: str, request: CloneRequest) -> OperationModel:
        return self._model(OperationModel, "POST", f"/api/v1/instances/{ref}/clone",
                           json=request.model_dump())

    def convert_instance(self, ref: str, to: str, force: bool = False) -> OperationModel:
        """``force``: convert a running instance too (that reboots it)."""
        return self._model(OperationModel, "POST", f"/api/v1/instances/{ref}/convert",
                           json=ConvertRequest(to=to, force=force).model_dump())
