"""/api/v1/host and /api/v1/templates."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from corral.api import convert
from corral.api.deps import corral
from corral.services.core import Corral
from corral.services.operations import OperationContext
from corral.wire.models import BuildTemplateRequest, HostInfo, OperationModel, TemplateModel

router = APIRouter(prefix="/api/v1", tags=["host"])
App = Annotated[Corral, Depends(corral)]


@router.get("/host", response_model=HostInfo)
def host_info(app: App) -> HostInfo:
    return HostInfo(**app.host.info(), capacity=app.capacity.report())


@router.get("/templates", response_model=list[TemplateModel])
def list_templates(app: App) -> list[TemplateModel]:
    return [
        convert.template(t, app.templates.size(t), app.templates.digest(t))
        for t in app.templates.list()
    ]


@router.get("/templates/{name}", response_model=TemplateModel)
def show_template(name: str, app: App) -> TemplateModel:
    image = app.templates.get(name)
    return convert.template(image, app.templates.size(image), app.templates.digest(image))


@router.post("/templates/build", response_model=OperationModel, status_code=202)
def build_template(body: BuildTemplateRequest, app: App) -> OperationModel:
    from corral.services.templates import builder_for

    builder_for(body.name)  # unknown builder: a clear 404 now, not a failed operation later
    if body.if_outdated and app.templates.is_current(body.name):
        def current(ctx: OperationContext) -> None:
            ctx.progress(1.0, "up to date")

        # A distinct action name: the caller can tell "nothing to build" from "built".
        return convert.operation(app.operations.submit("template-current", None, current))

    def work(ctx: OperationContext) -> None:
        app.templates.build(body.name, ctx.progress)
        app.events.publish("template.built", name=body.name)

    return convert.operation(app.operations.submit("template-build", None, work))


@router.post("/templates/import", response_model=TemplateModel, status_code=201)
async def import_template(request: Request, app: App, replace: bool = False) -> TemplateModel:
    """The body is a ``.corral-template`` file; it is verified in full before it is installed."""
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".corral-template",
                                dir=app.templates.directory)
    upload = Path(name)
    try:
        with open(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        image = await run_in_threadpool(
            app.templates.import_file, upload, replace, None, "the template file"
        )
    finally:
        upload.unlink(missing_ok=True)
    app.events.publish("template.imported", name=image.name)
    return convert.template(image, app.templates.size(image), app.templates.digest(image))


@router.get("/templates/{name}/export")
def export_template(name: str, app: App) -> FileResponse:
    image = app.templates.get(name)
    fd, path = tempfile.mkstemp(prefix=".export-", suffix=".corral-template",
                                dir=app.templates.directory)
    os.close(fd)
    dest = Path(path)
    try:
        app.templates.export_file(image.name, dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return FileResponse(
        dest, media_type="application/octet-stream", filename=f"{image.name}.corral-template",
        background=BackgroundTask(dest.unlink, missing_ok=True),
    )


@router.delete("/templates/{name}")
def delete_template(name: str, app: App) -> dict[str, str]:
    app.templates.delete(name)
    app.events.publish("template.deleted", name=name)
    return {"deleted": name}
