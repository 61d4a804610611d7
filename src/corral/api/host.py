"""/api/v1/host and /api/v1/templates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from corral.api import convert
from corral.api.deps import corral
from corral.services.core import Corral
from corral.services.template_share import TemplateRow
from corral.services.types import TemplateImage
from corral.wire.models import BuildTemplateRequest, HostInfo, OperationModel, TemplateModel

router = APIRouter(prefix="/api/v1", tags=["host"])
App = Annotated[Corral, Depends(corral)]


@router.get("/host", response_model=HostInfo)
def host_info(app: App) -> HostInfo:
    info = app.host.info()
    info["features"] = {**info["features"], "ksm": app.capacity.ksm_status().to_dict()}
    return HostInfo(**info, capacity=app.capacity.report(), warnings=app.cluster.warnings())


@router.get("/templates", response_model=list[TemplateModel])
def list_templates(app: App) -> list[TemplateModel]:
    """This host's templates and, in a cluster, the other members' (``installed`` false)."""
    return [_row(app, row) for row in app.template_share.rows()]


@router.get("/templates/{name}", response_model=TemplateModel)
def show_template(name: str, app: App) -> TemplateModel:
    """This host's template, or (in a cluster) one only other members hold."""
    found = next((row for row in app.template_share.rows(name)), None)
    if found is None:  # NotFound with what is available, or a template without files
        return _template(app, app.templates.get(name))
    return _row(app, found)


def _row(app: Corral, row: TemplateRow) -> TemplateModel:
    if row.image is not None:
        return _template(app, row.image).model_copy(update={"nodes": row.nodes})
    assert row.published is not None
    return convert.published_template(row.published)


def _template(app: Corral, image: TemplateImage) -> TemplateModel:
    """The wire model (the digest may hash the root filesystem: not on the event loop)."""
    return convert.template(image, app.templates.size(image), app.templates.digest(image))


@router.post("/templates/build", response_model=OperationModel, status_code=202)
def build_template(body: BuildTemplateRequest, app: App) -> OperationModel:
    return convert.operation(app.templates.submit_build(body.name, body.if_outdated))


@router.post("/templates/import", response_model=TemplateModel, status_code=201)
async def import_template(request: Request, app: App, replace: bool = False) -> TemplateModel:
    """The body is a ``.corral-template`` file; it is verified in full before it is installed.
    The service writes it on a worker thread, which takes the body's pieces from the event
    loop as it goes (no file I/O on the loop, no whole body in memory)."""
    pieces = _pulled(request, asyncio.get_running_loop())

    def install() -> TemplateModel:
        return _template(app, app.templates.import_upload(pieces, replace))

    return await run_in_threadpool(install)


def _pulled(request: Request, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request body as a blocking iterator for a worker thread (each piece is awaited
    on ``loop``)."""
    stream = request.stream()

    async def next_piece() -> bytes | None:
        return await anext(stream, None)

    while (piece := asyncio.run_coroutine_threadsafe(next_piece(), loop).result()) is not None:
        yield piece


@router.get("/templates/{name}/export")
def export_template(name: str, app: App) -> FileResponse:
    image = app.templates.get(name)
    dest = app.templates.export_spooled(image.name)
    return FileResponse(
        dest, media_type="application/octet-stream", filename=f"{image.name}.corral-template",
        background=BackgroundTask(dest.unlink, missing_ok=True),
    )


@router.delete("/templates/{name}")
def delete_template(name: str, app: App) -> dict[str, str]:
    app.templates.delete(name)
    return {"deleted": name}
