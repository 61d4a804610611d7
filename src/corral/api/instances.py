"""/api/v1/instances: list, create, show, lifecycle actions, exec, delete."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool

from corral.api import convert
from corral.api.deps import Policy, caller, corral
from corral.domain.labels import parse_selector
from corral.domain.users import Caller
from corral.services.core import Corral
from corral.services.foreign import ForeignSource, vnc_socket
from corral.services.types import OperationRecord
from corral.wire.bulk import ChangeLabelsRequest, LabelsModel
from corral.wire.models import (
    CreateRequest,
    ExecRequest,
    ExecResponse,
    InstanceModel,
    OperationModel,
    StopRequest,
)
from corral.wire.users import SetOwnerRequest

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])
App = Annotated[Corral, Depends(corral)]
Who = Annotated[Caller, Depends(caller)]


@router.get("", response_model=list[InstanceModel])
def list_instances(
    app: App, policy: Policy,
    node: Annotated[str | None, Query(description="only this member's instances")] = None,
    selector: Annotated[str | None, Query(
        description="labels to match: role=web,tier!=db,backup,!legacy")] = None,
) -> Response:
    """Every instance of every member (an owner: its own); the other members' as they
    published them in the cluster store. With ``selector``: those whose labels match, on
    every member (labels are published with instances: the same set a bulk command's
    selector picks). The JSON is made by ``convert.instances_json`` (the same as the
    models'; ``response_model`` stays for the OpenAPI schema)."""
    chosen = None if selector is None else parse_selector(selector)
    views = []
    if node is None or node == app.instances.node:
        views = app.instances.list_all(
            lambda records: policy.instances(records, lambda r: r.owner, lambda r: r.name),
            chosen)
    others = policy.instances(app.cluster.remote_instances(node), lambda i: i.owner,
                              lambda i: i.name)
    if chosen is not None:
        others = [i for i in others if chosen.matches(i.labels)]
    published = [convert.published(i) for i in sorted(others, key=lambda i: i.name)]
    return Response(convert.instances_json(views, published), media_type="application/json")


@router.get("/{ref}/labels", response_model=LabelsModel)
def show_labels(ref: str, app: App, policy: Policy) -> LabelsModel:
    rec = policy.find_instance(app.store.get_instance, ref)
    return LabelsModel(instance=rec.name, labels=app.store.labels(rec.id))


@router.patch("/{ref}/labels", response_model=LabelsModel)
def change_labels(ref: str, body: ChangeLabelsRequest, app: App) -> LabelsModel:
    """Set (``set``: key -> value) and remove (``unset``: keys) labels in one change."""
    labels = app.labels.change(ref, body.set, body.unset)
    return LabelsModel(instance=app.store.get_instance(ref).name, labels=labels)


@router.post("", response_model=OperationModel, status_code=202)
def create_instance(body: CreateRequest, app: App, who: Who) -> OperationModel | Response:
    """Create it here, on the member ``node`` names, or where placement puts it."""
    done = app.cluster.placer.create(body.model_dump(), who, lambda: _create_here(body, app))
    if isinstance(done, OperationRecord):
        return convert.operation(done)
    return Response(done.body, status_code=done.status, media_type="application/json")


def _create_here(body: CreateRequest, app: Corral) -> OperationRecord:
    settings = {
        key: str(value)
        for key, value in (("cpus", body.cpus), ("memory", body.memory), ("disk", body.disk))
        if value is not None
    }
    settings.update(body.resources)
    foreign = None
    if body.image is not None or body.iso is not None:
        foreign = ForeignSource(image=Path(body.image) if body.image else None,
                                iso=Path(body.iso) if body.iso else None)
    return app.instances.create(
        body.name, body.type, body.template, settings, privileged=body.privileged,
        start=body.start, pool=body.pool, foreign=foreign, owner=body.owner,
    )


@router.get("/{ref}/vnc")
def vnc(ref: str, app: App) -> dict[str, str]:
    """Where the VNC console of a firmware-booted VM is (a Unix socket on the daemon's host)."""
    return {"socket": str(vnc_socket(app.instances, ref)), "host": socket.gethostname()}


@router.get("/{ref}", response_model=InstanceModel)
def show_instance(ref: str, app: App, policy: Policy) -> InstanceModel:
    if policy.admin:
        model = convert.instance(app.instances.get(ref))
    else:  # an owner: another owner's instance answers as a missing one
        model = convert.instance(app.instances.view(
            policy.find_instance(app.store.get_instance, ref)))
    group = app.cluster.group_of(model.name)
    model.group = None if group is None else f"{group.name} ({group.rule.value})"
    return model


@router.put("/{ref}/owner", response_model=InstanceModel)
def set_owner(ref: str, body: SetOwnerRequest, app: App) -> InstanceModel:
    """Give the instance to a user (``owner: null``: to no one)."""
    return convert.instance(app.instances.view(app.instances.set_owner(ref, body.owner)))


@router.delete("/{ref}", response_model=OperationModel, status_code=202)
def delete_instance(ref: str, app: App, force: bool = False) -> OperationModel:
    return convert.operation(app.instances.delete(ref, force=force))


# ``wait``: seconds to hold the answer until the operation ends (0: answer at once). A
# start or stop usually ends within one round trip, so a client asks for both in one request.
WAIT_MAX = 3600
Wait = Annotated[float, Query(ge=0, le=WAIT_MAX, description="seconds to wait for the end")]


async def answer(app: Corral, submit: Callable[[], OperationRecord], wait: float) -> Response:
    """Submit on a thread of the operation pool, which then runs the operation itself
    (``OperationManager.execute``). With ``wait``, that thread wakes the event loop once:
    with the final record (or the refusal); after ``wait`` seconds the answer is the
    operation as it is. The JSON is serialized here: FastAPI would validate the model a
    second time against ``response_model`` (which stays for the OpenAPI schema)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[OperationRecord] = loop.create_future()
    submission = app.operations.execute(
        submit, lambda outcome: loop.call_soon_threadsafe(_settle, result, outcome),
        at_end=wait > 0)
    if wait > 0:
        await asyncio.wait({result}, timeout=wait)
        while not result.done() and submission.record is None:  # the pool is saturated
            await asyncio.wait({result}, timeout=0.05)
    if result.done() or submission.record is None:
        op = await result
    else:  # still running after ``wait``
        op = await run_in_threadpool(app.operations.wait, submission.record.id, 0)
    body = convert.operation(op).model_dump_json()
    return Response(body, status_code=202, media_type="application/json")


def lifecycle(app: Corral, ref: str, verb: str,
              stop: StopRequest | None = None) -> Callable[[], OperationRecord]:
    """The submit function of a lifecycle action (``verb``: start, stop, restart, suspend,
    resume; ``stop``: how a stop or restart stops)."""
    how = stop or StopRequest()
    if verb == "stop":
        return lambda: app.instances.stop(ref, force=how.force, timeout=how.timeout)
    if verb == "restart":
        return lambda: app.instances.restart(ref, force=how.force, timeout=how.timeout)
    action: Callable[[str], OperationRecord] = getattr(app.instances, verb)
    return lambda: action(ref)


def _settle(future: asyncio.Future[OperationRecord],
            result: OperationRecord | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


@router.post("/{ref}/start", response_model=OperationModel, status_code=202)
async def start_instance(ref: str, app: App, wait: Wait = 0) -> Response:
    return await answer(app, lifecycle(app, ref, "start"), wait)


@router.post("/{ref}/stop", response_model=OperationModel, status_code=202)
async def stop_instance(
    ref: str, app: App, body: StopRequest | None = None, wait: Wait = 0
) -> Response:
    return await answer(app, lifecycle(app, ref, "stop", body), wait)


@router.post("/{ref}/restart", response_model=OperationModel, status_code=202)
async def restart_instance(
    ref: str, app: App, body: StopRequest | None = None, wait: Wait = 0
) -> Response:
    return await answer(app, lifecycle(app, ref, "restart", body), wait)


@router.post("/{ref}/suspend", response_model=OperationModel, status_code=202)
async def suspend_instance(ref: str, app: App, wait: Wait = 0) -> Response:
    return await answer(app, lifecycle(app, ref, "suspend"), wait)


@router.post("/{ref}/resume", response_model=OperationModel, status_code=202)
async def resume_instance(ref: str, app: App, wait: Wait = 0) -> Response:
    return await answer(app, lifecycle(app, ref, "resume"), wait)


@router.post("/{ref}/exec", response_model=ExecResponse)
def exec_in_instance(ref: str, body: ExecRequest, app: App) -> ExecResponse:
    result = app.instances.exec(
        ref, body.argv, base64.b64decode(body.stdin_b64), timeout=body.timeout
    )
    return ExecResponse(
        exit_code=result.exit_code,
        stdout_b64=base64.b64encode(result.stdout).decode(),
        stderr_b64=base64.b64encode(result.stderr).decode(),
        timed_out=result.timed_out,
    )


@router.get("/{ref}/console/log")
def console_log(
    ref: str, app: App, limit: Annotated[int, Query(ge=1, le=1 << 24)] = 65536
) -> dict[str, str]:
    data = app.instances.console_log(ref, limit)
    return {"log_b64": base64.b64encode(data).decode()}
