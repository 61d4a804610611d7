"""/metrics of a real corrald (fake driver) checked by Prometheus's own linter, promtool,
scraped the way Prometheus does: over the TLS listener with a bearer token."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.wire.models import CreateRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template

PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state: Path = tmp_path_factory.mktemp("corral-metrics")
    write_fake_template(state / "templates")
    d = start_daemon(state)
    try:
        with d.client() as c:
            for name, kind in (("mvm1", "vm"), ("mvm2", "vm"), ("mct1", "ct"), ("mct2", "ct")):
                op = c.create_instance(CreateRequest(name=name, type=kind, template="tiny"))
                assert c.wait(op.id, 30).status == "success"
            assert c.wait(c.action("mvm1", "start").id, 30).status == "success"
            assert c.wait(c.action("mct1", "start").id, 30).status == "success"
        yield d
    finally:
        stop_daemon(d)


def scrape(d: Daemon) -> str:
    """As Prometheus scrapes: HTTPS to the TLS listener, the daemon's CA, a bearer token."""
    response = httpx.get(f"{d.url}/metrics", verify=str(d.state_dir / "tls" / "cert.pem"),
                         headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
    response.raise_for_status()
    return response.text


def test_scrape_needs_the_token(daemon: Daemon) -> None:
    response = httpx.get(f"{daemon.url}/metrics", timeout=30,
                         verify=str(daemon.state_dir / "tls" / "cert.pem"))
    assert response.status_code == 401


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_check_metrics_passes(daemon: Daemon) -> None:
    text = scrape(daemon)
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                             capture_output=True, timeout=60)
    problems = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0 and problems.strip() == "", problems


def test_host_level_metrics_are_there(daemon: Daemon) -> None:
    lines = scrape(daemon).splitlines()
    for wanted in (
        'corral_host_allocated{resource="memory"}',
        'corral_host_physical{resource="cpu"}',
        'corral_host_commitment_ratio{resource="memory"}',
        'corral_host_commitment_max_ratio{resource="disk"}',
        'corral_pool_size_bytes{pool="default"',
        'corral_pool_used_bytes{pool="default"',
        'corral_host_ksm_available ',
        'corral_instances{type="vm",state="running"} 1',
        'corral_instances{type="ct",state="stopped"} 1',
        'corral_operations_total{action="start",status="success"} 2',
        'corral_operations_total{action="create",status="success"} 4',
        'corral_operation_duration_seconds_bucket{action="create",le="+Inf"} 4',
        'corral_operation_duration_seconds_count{action="create"} 4',
    ):
        assert any(line.startswith(wanted) for line in lines), wanted
    assert "# TYPE corral_operation_duration_seconds histogram" in lines


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_is_a_real_check() -> None:
    """The check above can fail: promtool refuses a counter without ``_total``."""
    assert PROMTOOL is not None
    bad = b"# HELP corral_x_bytes x\n# TYPE corral_x_bytes counter\ncorral_x_bytes 1\n"
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=bad, capture_output=True,
                             timeout=60)
    assert checked.returncode != 0 and b"_total" in checked.stdout + checked.stderr
