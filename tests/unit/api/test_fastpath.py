"""api/fastpath.py: lifecycle actions answered before FastAPI's routing give what the
FastAPI routes give -- status, error bodies, the policy gate --, anything the fast path
does not fully understand is left to FastAPI, and every middleware the app adds sees them
(in process, ASGI, fake driver)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from corral.api import fastpath
from corral.api.app import LocalAdmin, create_app
from corral.api.fastpath import ROUTE_NAMES, VERBS, LifecycleFastPath
from corral.api.identity import ASGIApp, Receive, Scope, Send, serve_as
from corral.domain.users import Caller, Role
from corral.services.access import Access
from corral.services.core import Corral, Settings
from tests.integration.conftest import write_fake_template

Answer = tuple[int, Any]


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1"))
    app.start()
    for name in ("one", "two"):
        op = app.instances.create(name, "ct", "tiny", {})
        assert app.operations.wait(op.id, 10).status == "success"
    yield app


class _As:
    """Like identity.LocalAdmin, for any caller."""

    def __init__(self, app: ASGIApp, caller: Caller) -> None:
        self.app = app
        self.caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_as(self.caller, self.app, scope, receive, send)


def _ask(app: ASGIApp, path: str, **kwargs: Any) -> Answer:
    async def go() -> Answer:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
            response = await client.post(path, **kwargs)
            return response.status_code, response.json()
    return asyncio.run(go())


def _routed(app: FastAPI) -> list[str]:
    """The lifecycle requests that reach ``app``'s routing (the fast path did not answer)."""
    seen: list[str] = []
    routing = app.router.middleware_stack

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].split("/")[-1] in ROUTE_NAMES:
            seen.append(scope["path"])
        await routing(scope, receive, send)

    app.router.middleware_stack = counted
    return seen


def _is_fast_path(factory: object) -> bool:
    return factory is LifecycleFastPath


def _without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if not _is_fast_path(m.cls)]
    return app


def _both(corral: Corral, monkeypatch: pytest.MonkeyPatch,
          caller: Caller | None = None) -> tuple[ASGIApp, ASGIApp, list[str]]:
    """(the app, the app without its fast path, the lifecycle requests the first routed)."""
    app = create_app(corral)
    seen = _routed(app)

    def wrap(inner: ASGIApp) -> ASGIApp:
        return LocalAdmin(inner) if caller is None else _As(inner, caller)

    return wrap(app), wrap(_without_fast_path(create_app(corral))), seen


def _same_operation(fast: Answer, plain: Answer) -> None:
    assert fast[0] == plain[0] == 202
    for answer in (fast[1], plain[1]):
        for key in ("id", "created_at", "updated_at"):
            answer.pop(key)
    assert fast[1] == plain[1]


def test_the_route_names_are_the_ones_fastapis_gate_checks(
    corral: Corral, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The policy gate takes the route's name: the fast path must ask for the very same."""
    asked: list[str] = []
    real = Access.require

    def require(self: Access, action: str, method: str = "GET", instance: str | None = None,
                names_instance: bool = False) -> None:
        asked.append(action)
        real(self, action, method, instance, names_instance)

    monkeypatch.setattr(Access, "require", require)
    _, plain, _ = _both(corral, monkeypatch)
    for verb in ROUTE_NAMES:
        _ask(plain, f"/api/v1/instances/nosuch/{verb}")
    assert asked == list(ROUTE_NAMES.values())


def test_lifecycle_actions_answer_as_the_routes_do_without_reaching_fastapi(
    corral: Corral, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, plain, seen = _both(corral, monkeypatch)
    for verb, body in (("start", None), ("suspend", None), ("resume", None),
                       ("restart", {"force": True, "timeout": 0}), ("stop", None)):
        kwargs = {} if body is None else {"json": body}
        a = _ask(fast, f"/api/v1/instances/one/{verb}?wait=5", **kwargs)
        b = _ask(plain, f"/api/v1/instances/two/{verb}?wait=5", **kwargs)
        a[1].pop("instance"), b[1].pop("instance")
        _same_operation(a, b)
        assert a[1]["status"] == "success", (verb, a)
    assert seen == []
    assert corral.store.get_instance("one").state.value == "stopped"


def test_refusals_are_the_routes_errors(corral: Corral,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fast, plain, seen = _both(corral, monkeypatch)
    for path in ("/api/v1/instances/one/stop?wait=5",      # not running: 409
                 "/api/v1/instances/nosuch/start?wait=5",  # 404
                 "/api/v1/instances/one/resume"):          # not suspended
        assert _ask(fast, path) == _ask(plain, path)
    assert seen == []


def test_an_owner_is_refused_by_the_same_policy(corral: Corral,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    alice = Caller("alice", Role.OWNER)
    fast, plain, seen = _both(corral, monkeypatch, caller=alice)
    refused = _ask(fast, "/api/v1/instances/one/start?wait=5")
    assert refused == _ask(plain, "/api/v1/instances/one/start?wait=5")
    assert refused[0] == 403 and "alice" in refused[1]["message"]
    assert seen == [] and corral.store.get_instance("one").state.value == "stopped"


@pytest.mark.parametrize("path, kwargs", [
    ("/api/v1/instances/one/start?wait=-1", {}),
    ("/api/v1/instances/one/start?wait=soon", {}),
    ("/api/v1/instances/one/start?wait=99999", {}),
    ("/api/v1/instances/one/stop", {"json": {"force": "perhaps"}}),
    ("/api/v1/instances/one/stop", {"content": b"{not json",
                                    "headers": {"content-type": "application/json"}}),
])
def test_what_the_fast_path_does_not_understand_goes_to_fastapi(
    corral: Corral, monkeypatch: pytest.MonkeyPatch, path: str, kwargs: dict[str, Any],
) -> None:
    fast, plain, seen = _both(corral, monkeypatch)
    answer = _ask(fast, path, **kwargs)
    assert answer == _ask(plain, path, **kwargs)
    assert answer[0] == 422 and len(seen) == 1


def test_other_query_parameters_go_to_fastapi(corral: Corral,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _, seen = _both(corral, monkeypatch)
    answer = _ask(fast, "/api/v1/instances/one/start?wait=5&later=2")
    assert answer[0] == 202 and answer[1]["status"] == "success" and len(seen) == 1


def test_other_requests_are_not_touched() -> None:
    for method, path in (("GET", "/api/v1/instances/one/start"),
                         ("POST", "/api/v1/instances/one/exec"),
                         ("POST", "/api/v1/instances/one/start/now"),
                         ("POST", "/api/v1/instances//start"),
                         ("POST", "/api/v1/instancesX/one/start")):
        assert fastpath._action({"type": "http", "method": method, "path": path}) is None
    assert fastpath._action({"type": "http", "method": "POST",
                             "path": "/api/v1/instances/101/stop"}) == ("101", "stop")


class _Recorder:
    """An app-wide concern added later (an audit log, a request id, request metrics): a
    plain ASGI middleware that records every HTTP request and the status it was answered."""

    def __init__(self, app: ASGIApp, log: list[tuple[str, str, int]]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recorded(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.log.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, recorded)


def test_a_middleware_the_app_adds_sees_the_lifecycle_actions(corral: Corral) -> None:
    """The fast path is the innermost middleware: one added the normal way, after the app
    is made, sees a start and a stop the fast path answers -- and a refused one."""
    app = create_app(corral)
    log: list[tuple[str, str, int]] = []
    app.add_middleware(_Recorder, log=log)
    seen = _routed(app)
    served = LocalAdmin(app)
    assert _ask(served, "/api/v1/instances/one/start?wait=5")[0] == 202
    assert _ask(served, "/api/v1/instances/one/stop?wait=5", json={"force": True})[0] == 202
    assert _ask(served, "/api/v1/instances/nosuch/start")[0] == 404
    assert seen == []  # all three were the fast path's answers, not the routes'
    assert log == [("POST", "/api/v1/instances/one/start", 202),
                   ("POST", "/api/v1/instances/one/stop", 202),
                   ("POST", "/api/v1/instances/nosuch/start", 404)]
    assert corral.store.get_instance("one").state.value == "stopped"


def test_the_fast_path_is_the_innermost_middleware(corral: Corral) -> None:
    app = create_app(corral)
    app.add_middleware(_Recorder, log=[])
    assert _is_fast_path(app.user_middleware[-1].cls)


def test_every_lifecycle_route_is_known_to_the_fast_path() -> None:
    """The names come from instances.py's routes; each verb has exactly one."""
    assert set(ROUTE_NAMES) == set(VERBS)
    assert ROUTE_NAMES["start"] == "start_instance"
