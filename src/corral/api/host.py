"""/api/v1/host and /api/v1/templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

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

    def work(ctx: OperationContext) -> None:
        app.templates.build(body.name, ctx.progress)
        app.events.publish("template.built", name=body.name)

    return convert.operation(app.operations.submit("template-build", None, work))
