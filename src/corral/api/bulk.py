"""/api/v1/bulk: one action on many instances, as one operation with a child per item.

One endpoint for every action (not /instances/bulk-start, …): the request is the same shape
for all (names or a selector, parallelism, fail-fast) and the answer is always the parent
operation; the action's own options ride along. ``GET /api/v1/operations/{id}/children``
lists the items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from corral.api import convert
from corral.api.deps import Policy, corral
from corral.domain.bulk import BulkAction
from corral.services.bulk import BulkRequest, CreateSpec
from corral.services.core import Corral
from corral.wire.bulk import BulkCreate, BulkRequestModel
from corral.wire.models import OperationModel

router = APIRouter(prefix="/api/v1/bulk", tags=["bulk"])
App = Annotated[Corral, Depends(corral)]


def _create(body: BulkCreate | None) -> CreateSpec | None:
    if body is None:
        return None
    settings = {key: str(value) for key, value in (
        ("cpus", body.cpus), ("memory", body.memory), ("disk", body.disk)) if value is not None}
    settings.update(body.resources)
    return CreateSpec(kind=body.type, template=body.template, settings=settings,
                      privileged=body.privileged, start=body.start, pool=body.pool,
                      owner=body.owner, labels=dict(body.labels))


@router.post("", response_model=OperationModel, status_code=202)
def run_bulk(body: BulkRequestModel, app: App, policy: Policy) -> OperationModel:
    """Start a bulk operation; its id at once (follow it, cancel it, list its items)."""
    policy.bulk(body.action.value)
    if body.action is BulkAction.BACKUP and body.target and not policy.admin:
        policy.target(body.target, app.backups.store.target(body.target) is not None,
                      body.key_file)
    request = BulkRequest(
        action=body.action, names=tuple(body.names), selector=body.selector,
        parallel=body.parallel, fail_fast=body.fail_fast, force=body.force,
        timeout=body.timeout, argv=tuple(body.argv), snapshot=body.snapshot,
        memory=body.memory, target=body.target, key_file=body.key_file,
        create=_create(body.create),
    )
    return convert.operation(app.bulk.submit(request, lambda r: policy.owns(r.owner)))
