"""The console's cookie identity and CSRF guard (web/session.py), in process over ASGI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from corral.api import convert
from corral.api.identity import CALLER
from corral.domain.errors import CorralError
from corral.services.users import UserService
from corral.state.database import Database
from corral.state.userstore import UserStore
from corral.web.session import COOKIE, SessionAuth, cookie_header, cookies, csrf_guard


def _app(users: UserService) -> SessionAuth:
    app = FastAPI(dependencies=[Depends(csrf_guard)])

    @app.exception_handler(CorralError)
    async def refused(_request: Request, exc: CorralError) -> JSONResponse:
        return convert.error(exc)

    @app.api_route("/ui/thing", methods=["GET", "POST"])
    def thing(request: Request) -> dict[str, str | None]:
        who = request.scope.get(CALLER)
        return {"who": who.name if who else None}

    return SessionAuth(app, users)


def _call(app: SessionAuth, method: str, cookie: str | None = None,
          headers: dict[str, str] | None = None,
          data: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        sent = {**({"cookie": f"{COOKIE}={cookie}"} if cookie else {}), **(headers or {})}
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.request(method, "/ui/thing", headers=sent, data=data)

    return asyncio.run(go())


def test_a_session_cookie_is_the_identity_and_changes_need_its_csrf_token(
        tmp_path: Path) -> None:
    users = UserService(UserStore(Database.open(tmp_path / "corral.db")))
    users.add("olga", "operator")
    secret, session = users.sessions.open("olga")
    app = _app(users)
    assert _call(app, "GET").json() == {"who": None}
    assert _call(app, "GET", "not-a-session").json() == {"who": None}
    assert _call(app, "GET", secret).json() == {"who": "olga"}
    refused = _call(app, "POST", secret)
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert _call(app, "POST", secret, headers={"x-csrf-token": "wrong"}).status_code == 403
    ok = _call(app, "POST", secret, headers={"x-csrf-token": session.csrf})
    assert ok.json() == {"who": "olga"}
    form = _call(app, "POST", secret, data={"csrf_token": session.csrf})
    assert form.json() == {"who": "olga"}
    assert _call(app, "POST", secret, data={"csrf_token": "nope"}).status_code == 403
    users.remove("olga")  # a removed user's cookie is no identity any more
    assert _call(app, "GET", secret).json() == {"who": None}


def test_cookie_attributes_and_parsing() -> None:
    header = cookie_header(COOKIE, "abc", secure=True)
    assert header == f"{COOKIE}=abc; Path=/ui; HttpOnly; SameSite=Strict; Secure"
    assert "Max-Age=0" in cookie_header(COOKIE, "", secure=True, max_age=0)
    scope = {"headers": [(b"cookie", f"a=1; {COOKIE}=xyz".encode())]}
    assert cookies(scope) == {"a": "1", COOKIE: "xyz"}
    assert cookies({"headers": [(b"cookie", b"\x00bad=;;")]}) in ({}, {"bad": ""})
