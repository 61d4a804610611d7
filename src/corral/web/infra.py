"""The host's shared things: templates (build, import with upload, export), networks and
traffic classes, storage pools, backup targets and schedules. Each page and change asks the
policy by the API route's name and calls the service that route calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from corral.domain.errors import CorralError, Forbidden
from corral.web.pages import Ctx, Page, attempt
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)
CHUNK = 1 << 20


def refused(page: Page) -> int:
    """A refused change's status: 400, but 200 to htmx (which swaps no 4xx answer in)."""
    return 200 if page.htmx else 400


# Templates -------------------------------------------------------------------------------
def _templates(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    page.require("list_templates")
    app = page.app
    rows = []
    for image in app.templates.list():
        meta = image.metadata
        rows.append({"name": image.name, "version": getattr(image, "version", ""),
                     "os": meta.get("os", ""), "arch": meta.get("arch", ""),
                     "kinds": ", ".join(meta.get("kinds", ["ct", "vm"])),
                     "size": app.templates.size(image)})
    return page.render("templates.html", status, templates=rows, **extra)


@router.get("/templates", response_class=HTMLResponse)
def templates_page(page: Ctx) -> HTMLResponse:
    return _templates(page)


@router.post("/templates/build", response_class=HTMLResponse)
def build_template(page: Ctx, name: Annotated[str, Form()] = "") -> HTMLResponse:
    page.require("build_template")
    op, errors = attempt(lambda: page.app.templates.submit_build(name.strip()), ("name",))
    if op is None:
        return _templates(page, refused(page), problem=errors.get("name") or errors.get(""))
    return _templates(page, notice=f"building template {name.strip()}: operation {op.id}",
                      op=op.id)


@router.post("/templates/import", response_class=HTMLResponse)
async def import_template(page: Ctx, file: UploadFile,
                          replace: Annotated[str, Form()] = "") -> HTMLResponse:
    page.require("import_template")

    def pieces() -> Iterator[bytes]:
        while chunk := file.file.read(CHUNK):
            yield chunk

    def install() -> HTMLResponse:
        try:
            image = page.app.templates.import_upload(pieces(), bool(replace))
        except Forbidden:
            raise
        except CorralError as exc:
            return _templates(page, refused(page), problem=f"{file.filename}: {exc.message}")
        return _templates(page, notice=f"imported template {image.name}")

    result: HTMLResponse = await run_in_threadpool(install)
    return result


@router.get("/templates/{name}/export")
def export_template(page: Ctx, name: str) -> FileResponse:
    page.require("export_template")
    image = page.app.templates.get(name)
    dest = page.app.templates.export_spooled(image.name)
    return FileResponse(dest, media_type="application/octet-stream",
                        filename=f"{image.name}.corral-template",
                        background=BackgroundTask(dest.unlink, missing_ok=True))


# Networks and traffic classes --------------------------------------------------------------
def render_networks(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    page.require("list_networks")
    app = page.app
    classes = app.networks.list_classes() if page.may("list_classes") else []
    return page.render("networks.html", status, networks=app.networks.list_networks(),
                       classes=classes, **extra)


@router.get("/networks", response_class=HTMLResponse)
def networks_page(page: Ctx) -> HTMLResponse:
    return render_networks(page)


@router.post("/traffic-classes", response_class=HTMLResponse)
def set_class(page: Ctx, name: Annotated[str, Form()] = "",
              ranges: Annotated[str, Form()] = "") -> HTMLResponse:
    page.require("set_class")
    joined = ",".join(r.strip() for r in ranges.replace("\n", ",").split(",") if r.strip())
    cls, errors = attempt(lambda: page.app.networks.set_class(f"{name.strip()}={joined}"),
                          ("name", "ranges"))
    if cls is None:
        return render_networks(page, refused(page), errors=errors,
                         values={"name": name, "ranges": ranges})
    return render_networks(page, notice=f"traffic class {cls.name} set")


@router.post("/traffic-classes/{name}/delete", response_class=HTMLResponse)
def delete_class(page: Ctx, name: str) -> HTMLResponse:
    page.require("delete_class")
    _done, errors = attempt(lambda: page.app.networks.delete_class(name), ())
    return render_networks(page, problem=errors.get(""),
                     notice=None if errors else f"traffic class {name} deleted")


# Storage pools -----------------------------------------------------------------------------
def render_storage(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    page.require("list_pools")
    pools: list[tuple[Any, Any, str | None]] = []
    for record in page.app.storage.list_pools():
        try:
            pools.append((record, page.app.storage.status(record), None))
        except CorralError as exc:
            pools.append((record, None, exc.message))
    return page.render("storage.html", status, pools=pools, **extra)


@router.get("/storage", response_class=HTMLResponse)
def storage_page(page: Ctx) -> HTMLResponse:
    return render_storage(page)


# Backup targets and schedules --------------------------------------------------------------
def render_backups(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    page.require("list_targets")
    app = page.app
    targets = app.backups.targets()  # shown: names, and the URL to those who may add one
    schedules = app.schedules.schedules() if page.may("list_schedules") else []
    names = [i.name for i in app.store.list_instances()] if page.may("set_schedule") else []
    return page.render("backups.html", status, targets=targets, schedules=schedules,
                       instances=names, **extra)


@router.get("/backups", response_class=HTMLResponse)
def backups_page(page: Ctx) -> HTMLResponse:
    return render_backups(page)


@router.post("/backup-targets", response_class=HTMLResponse)
def add_target(page: Ctx, name: Annotated[str, Form()] = "",
               url: Annotated[str, Form()] = "") -> HTMLResponse:
    page.require("add_target")
    made, errors = attempt(lambda: page.app.backups.add_target(name.strip(), url.strip()),
                           ("name", "url"))
    if made is None:
        return render_backups(page, refused(page), errors=errors, values={"name": name, "url": url})
    return render_backups(page, notice=f"backup target {made.name} added")
