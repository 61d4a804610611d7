"""Users (admins only: the policy's ``list_users``, ``add_user``, ``set_password``,
``remove_user``): roles, console passwords, API tokens shown once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from corral.domain.users import Role
from corral.web.pages import Ctx, Page, attempt
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)


def _page(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    page.require("list_users")
    users = [(u, page.app.users.store.owned(u.name)) for u in page.app.users.list()]
    return page.render("users.html", status=status, users=users,
                       roles=[r.value for r in Role], **extra)


@router.get("/users", response_class=HTMLResponse)
def users_page(page: Ctx) -> HTMLResponse:
    return _page(page)


@router.post("/users", response_class=HTMLResponse)
def add_user(page: Ctx, name: Annotated[str, Form()] = "",
             role: Annotated[str, Form()] = "owner",
             password: Annotated[str, Form()] = "") -> Response:
    page.require("add_user")
    if password:
        page.require("set_password")

    def work() -> str:
        made, token = page.app.users.add(name.strip(), role)
        if password:
            try:
                page.app.users.set_password(made.name, password)
            except Exception:
                page.app.users.remove(made.name)  # nothing half-made
                raise
        return token

    token, errors = attempt(work, ("name", "role", "password"))
    if token is None:
        return _page(page, 200 if page.htmx else 400, errors=errors,
                     values={"name": name, "role": role})
    return _page(page, made=name.strip(), token=token)


@router.post("/users/{name}/password", response_class=HTMLResponse)
def set_password(page: Ctx, name: str, password: Annotated[str, Form()] = "") -> Response:
    page.require("set_password")
    def work() -> bool:
        page.app.users.set_password(name, password)
        return True

    done, errors = attempt(work, ("password",))
    if done is None:
        return _page(page, 200 if page.htmx else 400, problem=f"{name}: {errors.popitem()[1]}")
    return _page(page, notice=f"console password of {name} set; its sessions ended")


@router.post("/users/{name}/remove", response_class=HTMLResponse)
def remove_user(page: Ctx, name: str) -> Response:
    page.require("remove_user")
    def work() -> bool:
        page.app.users.remove(name)
        return True

    done, errors = attempt(work, ())
    if done is None:
        return _page(page, 200 if page.htmx else 409, problem=errors.popitem()[1])
    return _page(page, notice=f"user {name} removed")


@router.post("/users/{name}/token", response_class=HTMLResponse)
def rotate_token(page: Ctx, name: str) -> Response:
    """A new API token for ``name`` (``rotate_token``), shown once; the old one stops."""
    page.require("rotate_token")
    token, errors = attempt(lambda: page.app.users.rotate(name), ())
    if token is None:
        return _page(page, 200 if page.htmx else 404, problem=errors.popitem()[1])
    return _page(page, rotated=name, token=token)
