"""Resources through the real API and CLI with the fake driver: set, stats, policy, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import ApiError
from corral.wire.models import CreateRequest
from tests.integration.conftest import Daemon, start_daemon, write_fake_template


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state: Path = tmp_path_factory.mktemp("corral-res")
    write_fake_template(state / "templates")
    d = start_daemon(state)
    try:
        yield d
    finally:
        d.process.terminate()
        d.process.wait(10)


def _create(d: Daemon, name: str, **resources: str) -> None:
    with d.client() as c:
        op = c.create_instance(CreateRequest(name=name, type="vm", template="tiny",
                                             resources=resources))
        assert c.wait(op.id, 30).status == "success"


def test_set_stopped_then_running(daemon: Daemon) -> None:
    _create(daemon, "r1", cpu_limit="50", max_cpus="2")
    with daemon.client() as c:
        assert c.get_instance("r1").resources.cpu_limit == 50
        stopped = c.set_resources("r1", {"cpu_shares": "256"})
        assert [(x.key, x.applied) for x in stopped.changes] == [("cpu_shares", "next start")]
        assert c.wait(c.action("r1", "start").id, 30).status == "success"
        live = c.set_resources("r1", {"cpus": "2", "memory": "96M", "disk": "128M"})
        assert {x.key: x.applied for x in live.changes} == {
            "cpus": "live", "memory": "live", "disk": "live"}
        over = c.set_resources("r1", {"cpus": "3"})
        assert over.changes[0].applied == "next start"
        stats = c.stats("r1")
        assert (stats.vcpus, stats.memory_total, stats.disk_size) == (2, 96 * 1024**2,
                                                                      128 * 1024**2)
        with pytest.raises(ApiError, match="cannot shrink"):
            c.set_resources("r1", {"disk": "64M"})
        with pytest.raises(ApiError, match="containers only"):
            c.set_resources("r1", {"pids": "10"})
        assert c.get_instance("r1").resources.cpus == 3


def test_policy_refuses_with_numbers(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.set_policy({"memory": "0.0001"})
        try:
            with pytest.raises(ApiError, match=r"memory over-commitment would be .* above the"):
                c.create_instance(CreateRequest(name="r2", type="ct", template="tiny"))
            assert all(i.name != "r2" for i in c.list_instances())
            info = c.host_info()
            assert info.capacity["memory"]["max_ratio"] == 0.0001
        finally:
            c.set_policy({"memory": "4"})


def test_cli_set_stats_and_metrics(daemon: Daemon) -> None:
    _create(daemon, "r3")
    out = daemon.cli("set", "r3", "cpu_limit=25", "io_iops=100", check=True).stdout
    assert "cpu_limit" in out and "next start" in out
    bad = daemon.cli("set", "r3", "colour=red")
    assert bad.returncode == 1 and "unknown resource key" in bad.stderr
    assert "cpu" in daemon.cli("stats", "r3", check=True).stdout
    assert "RATIO" in daemon.cli("host", "info", check=True).stdout
    with daemon.client() as c:
        text = c.metrics()
    assert 'corral_instance_cpu_seconds_total{instance="r3",type="vm"}' in text
    assert 'corral_host_allocated{resource="memory"}' in text
