"""Log in (user name + console password) and out.

A login is refused before the password is checked while the client's address is over the
daemon's one failed-authentication limit (``services/authlimit.py``, shared with the API's
bearer tokens); each wrong password counts there. The login form carries its own CSRF
token (double-submit: a cookie and a form field), because there is no session yet.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from corral.api.identity import client_address
from corral.services.authlimit import wait_message
from corral.services.core import Corral
from corral.web.pages import Ctx, render_template
from corral.web.session import COOKIE, LOGIN_COOKIE, PATH, cookie_header, cookies, session_of

router = APIRouter(prefix=PATH, include_in_schema=False)


def _next(target: str | None) -> str:
    """Where to go after the login: a console path only (never another site)."""
    if target and target.startswith(f"{PATH}/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return f"{PATH}/"


def _form(request: Request, status: int = 200, error: str = "", user: str = "",
          target: str | None = None) -> Response:
    token = cookies(request.scope).get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    secure: bool = request.app.state.secure
    response = render_template("login.html", {
        "me": None, "error": error, "user": user, "login_csrf": token,
        "next": _next(target or request.query_params.get("next")),
    }, status)
    response.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, token, secure=secure))
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    if session_of(request) is not None:
        return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    return _form(request)


@router.post("/login")
async def log_in(
    request: Request,
    user: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    app: Corral = request.app.state.corral
    expected = cookies(request.scope).get(LOGIN_COOKIE)
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return _form(request, 403, "the login form expired: try again", user, next)
    limiter = app.auth_limiter
    address = client_address(request.scope)
    wait = limiter.blocked(address)
    if wait is not None:
        limiter.refused(address, "web", user or None)
        response = _form(request, 429, wait_message(wait), user, next)
        response.headers["retry-after"] = str(max(int(wait + 0.999), 1))
        return response
    who = await asyncio.to_thread(app.users.check_password, user, password) if user else None
    if who is None:
        limiter.failed(address, "web", user or None)
        return _form(request, 401, "wrong user name or password", user, next)
    secret, _session = await asyncio.to_thread(app.users.sessions.open, who.name)
    secure: bool = request.app.state.secure
    response = RedirectResponse(_next(next), status_code=303)
    response.headers.append("set-cookie", cookie_header(COOKIE, secret, secure=secure))
    response.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, "", secure=secure,
                                                        max_age=0))
    return response


@router.post("/logout")
def log_out(page: Ctx) -> Response:
    secret = cookies(page.request.scope).get(COOKIE)
    if secret:
        page.app.users.sessions.close(secret)
    response = page.redirect(f"{PATH}/login")
    response.headers.append("set-cookie", cookie_header(
        COOKIE, "", secure=page.request.app.state.secure, max_age=0))
    return response


@router.get("")
def console_root() -> Response:
    return RedirectResponse(f"{PATH}/", status_code=308)
