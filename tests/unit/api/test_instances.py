"""Lifecycle actions with ``?wait=``, in process (ASGI), with a driver start held open."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from corral.api.app import LocalAdmin, create_app
from corral.cluster.store import PublishedInstance
from corral.domain.instance import InstanceSpec
from corral.services.core import Corral, Settings
from corral.templates.image import TemplateImage
from tests.integration.conftest import write_fake_template


@pytest.fixture
def corral(tmp_path: Path) -> Corral:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1"))
    app.start()
    op = app.instances.create("held1", "ct", "tiny", {})
    assert app.operations.wait(op.id, 10).status == "success"
    return app


async def _post(corral: Corral, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=LocalAdmin(create_app(corral)))
    async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
        return await client.post(path)


def test_wait_shorter_than_the_operation_answers_it_running(
    corral: Corral, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer comes after ``wait`` with the operation still running; it then ends on its
    own and the instance runs."""
    release = threading.Event()
    driver = corral.instances.driver(corral.store.get_instance("held1").kind)
    real_start = driver.start

    def held_start(spec: InstanceSpec, template: TemplateImage) -> None:
        release.wait(10)
        real_start(spec, template)

    monkeypatch.setattr(driver, "start", held_start)
    answer = asyncio.run(_post(corral, "/api/v1/instances/held1/start?wait=0.2"))
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "running"
    release.set()
    assert corral.operations.wait(body["id"], 10).status == "success"
    assert corral.store.get_instance("held1").state.value == "running"


def test_a_refused_action_answers_its_error(corral: Corral) -> None:
    answer = asyncio.run(_post(corral, "/api/v1/instances/held1/stop?wait=5"))
    assert answer.status_code == 409, answer.text
    assert "stopped" in answer.text or "not running" in answer.text
    missing = asyncio.run(_post(corral, "/api/v1/instances/nosuch/start?wait=5"))
    assert missing.status_code == 404


def test_a_selector_lists_matching_instances_of_every_member(
    corral: Corral, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Labels are published with instances: ``?selector=`` picks other members' too (the
    set `corral delete --selector` confirms and sends), and ``node`` still narrows it."""
    corral.labels.change("held1", {"role": "web"}, [])
    op = corral.instances.create("plain1", "ct", "tiny", {})
    assert corral.operations.wait(op.id, 10).status == "success"

    sizes = {"cpus": 1, "memory": 128 << 20, "disk": 64 << 20}

    def published(node: str | None = None) -> list[PublishedInstance]:
        made = [PublishedInstance("web2", 7, "ct", "running", "n2", "tiny", sizes,
                                  labels={"role": "web"}),
                PublishedInstance("db2", 8, "ct", "running", "n2", "tiny", sizes)]
        return [i for i in made if node in (None, i.node)]

    monkeypatch.setattr(corral.cluster, "remote_instances", published)

    def names(query: str) -> dict[str, str]:
        answer = asyncio.run(_get(corral, f"/api/v1/instances?{query}"))
        assert answer.status_code == 200, answer.text
        return {i["name"]: i["node"] for i in answer.json()}

    assert names("selector=role%3Dweb") == {"held1": "n1", "web2": "n2"}
    assert names("selector=role%3Dweb&node=n2") == {"web2": "n2"}
    assert names("selector=role%3Dweb&node=n1") == {"held1": "n1"}
    assert names("selector=%21role") == {"plain1": "n1", "db2": "n2"}


async def _get(corral: Corral, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=LocalAdmin(create_app(corral)))
    async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
        return await client.get(path)
