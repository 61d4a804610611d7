"""Service records to wire models, and Corral's errors to their JSON answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from corral.domain.errors import CorralError
from corral.services.instances import InstanceView
from corral.services.template_share import ClusterTemplate
from corral.services.types import (
    InstanceRecord,
    Member,
    OperationRecord,
    PublishedInstance,
    TemplateImage,
)
from corral.wire.cluster import MemberModel
from corral.wire.models import InstanceModel, OperationModel, ResourcesModel, TemplateModel


def error(exc: CorralError) -> JSONResponse:
    """The answer to a ``CorralError``: its status, ``{"error": code, "message": ...}``."""
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)


HTTP_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large",
              415: "unsupported_media_type"}
"""Error codes of the answers Starlette makes itself (a route that does not exist, …)."""


def validation(exc: RequestValidationError) -> str:
    """A request that does not match the API's schema, said in one line per problem:
    ``body.resources.memory: Input should be a valid integer``."""
    parts = []
    for problem in exc.errors()[:10]:
        where = ".".join(str(p) for p in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where
                     else str(problem.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"


def _iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


def instance(view: InstanceView) -> InstanceModel:
    rec = view.record
    runtime = view.runtime
    return InstanceModel(
        id=rec.id, name=rec.name, type=rec.kind.value, state=view.state.value,
        template=rec.template, resources=ResourcesModel(**rec.resources.to_dict()),
        privileged=rec.privileged, ip=list(view.addresses),
        node=rec.node, pid=runtime.pid if runtime else None,
        created_at=_iso(rec.created_at), operation=view.operation, owner=rec.owner,
        agent=runtime.details.get("agent") if runtime else None, labels=dict(view.labels),
        stop_reason=view.stop_reason,
    )


def published(item: PublishedInstance) -> InstanceModel:
    """An instance another member published (no runtime details: they are its host's)."""
    return InstanceModel(
        id=item.id, name=item.name, type=item.kind, state=item.state, template=item.template,
        resources=ResourcesModel(**item.resources), privileged=item.privileged,
        ip=list(item.addresses), node=item.node, created_at=item.created_at, owner=item.owner,
        labels=dict(item.labels),
    )


def member(m: Member) -> MemberModel:
    return MemberModel(node=m.node, online=m.online, cordoned=m.cordoned, url=m.info.url,
                       fingerprint=m.info.fingerprint, joined_at=m.info.joined_at,
                       facts=m.facts)


_Runtime = tuple[str, tuple[str, ...], int | None, str | None, str | None,
                 tuple[tuple[str, str], ...], str | None]
_LISTED: dict[int, tuple[InstanceRecord, _Runtime, bytes]] = {}
"""Per instance id: the record last listed, what the runtime said of it (and its labels),
and its JSON."""


def _instance_json(view: InstanceView) -> bytes:
    runtime = view.runtime
    said: _Runtime = (view.state.value, view.addresses, runtime.pid if runtime else None,
                      view.operation, runtime.details.get("agent") if runtime else None,
                      tuple(sorted(view.labels.items())), view.stop_reason)
    rec = view.record
    seen = _LISTED.get(rec.id)
    if seen is not None and seen[0] is rec and seen[1] == said:
        return seen[2]
    body = instance(view).model_dump_json().encode()
    _LISTED[rec.id] = (rec, said, body)
    return body


def instances_json(views: Sequence[InstanceView],
                   more: Sequence[InstanceModel] = ()) -> bytes:
    """``[instance(v) for v in views]`` as the JSON FastAPI sends for ``list[InstanceModel]``,
    without a model per instance each time: an instance whose record (the store hands out
    the same record for an unchanged row) and runtime figures are those of the last list
    gives the JSON made then. ``list`` of a thousand spent most of its time building,
    validating and encoding a model per instance. ``more`` (other members' instances, as
    published) follow as they are."""
    if len(_LISTED) > 2 * len(views) + 256:
        _LISTED.clear()
    items = [_instance_json(view) for view in views]
    items += [m.model_dump_json().encode() for m in more]
    return b"[" + b",".join(items) + b"]"


def operation(rec: OperationRecord) -> OperationModel:
    return OperationModel(
        id=rec.id, action=rec.action, instance=rec.instance, status=rec.status,
        progress=rec.progress, phase=rec.phase, error=rec.error,
        created_at=_iso(rec.created_at), updated_at=_iso(rec.updated_at),
        requested_by=rec.requested_by, parent=rec.parent,
    )


def template(image: TemplateImage, size: int, digest: str) -> TemplateModel:
    meta = image.metadata
    return TemplateModel(
        name=image.name, version=image.version, os=str(meta.get("os", "")),
        arch=str(meta.get("arch", "")), size=size,
        kinds=list(meta.get("kinds", ["ct", "vm"])), sha256=digest,
    )


def published_template(found: ClusterTemplate) -> TemplateModel:
    """A template only other cluster members hold (as they published it)."""
    return TemplateModel(
        name=found.name, version=found.version, os=found.os, arch=found.arch,
        size=found.size, kinds=found.kinds, sha256=found.sha256, installed=False,
        nodes=found.nodes,
    )
