"""Lifecycle actions with ``?wait=``, in process (ASGI), with a driver start held open."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from corral.api.app import LocalAdmin, create_app
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
