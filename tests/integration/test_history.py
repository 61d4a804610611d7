"""The graphs' history through a real corrald (fake driver): its one sampler writes what the
drivers and the traffic counters report, the API, the SDK and the CLI return it, the access
policy guards it, and a deleted instance's history goes with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import ApiError
from corral.wire.models import (
    AddNicRequest,
    CreateNetworkRequest,
    CreateRequest,
    SetBandwidthRequest,
)
from tests.integration.conftest import (
    Daemon,
    start_daemon,
    stop_daemon,
    wait_until,
    write_fake_template,
)
from tests.integration.test_owners import add_user, client_as


@pytest.fixture
def sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A daemon whose sampler reads every 0.3 s (the buckets stay per minute)."""
    monkeypatch.setenv("CORRAL_HISTORY_INTERVAL", "0.3")
    write_fake_template(tmp_path / "templates")
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        stop_daemon(d)


def test_the_sampler_writes_and_the_api_returns_it(sampling: Daemon) -> None:
    with sampling.client() as c:
        c.create_network(CreateNetworkRequest(name="lan", type="bridged",
                                              subnets=["10.5.0.0/24"], gateways=["10.5.0.1"]))
        for name in ("web", "idle"):
            op = c.create_instance(CreateRequest(name=name, type="ct", template="tiny",
                                                 start=name == "web"))
            assert c.wait(op.id, timeout=30).status == "success"
        c.add_nic("web", AddNicRequest(network="lan"))
        c.set_traffic_class("world", ["0.0.0.0/0"])
        c.set_bandwidth("web", SetBandwidthRequest(traffic_class="world", rate="10mbit"))
        web_id = next(i.id for i in c.list_instances() if i.name == "web")
        assert wait_until(lambda: len(c.history("web").points) >= 1, 20)

        # the "kernel" (recording backend) counts traffic of class world out of web
        counters = sampling.state_dir / "network" / "counters.json"
        data = json.loads(counters.read_text())
        data["bridge"][f"i{web_id}_world_out"] = [100, 600_000]
        counters.write_text(json.dumps(data))

        def counted() -> bool:
            return any(p.traffic.get("world", {}).get("out", 0) > 0
                       for p in c.history("web").points)

        assert wait_until(counted, 20)
        past = c.history("web", "hour")
        assert (past.instance, past.range, past.step) == ("web", "hour", 60)
        assert past.classes == ["world"]
        assert past.start <= past.points[0].time <= past.points[-1].time <= past.end
        assert all(p.time % 60 == 0 for p in past.points)
        last = past.points[-1]
        assert last.memory_used == 8 * 1024**2 and last.memory_total == 128 * 1024**2
        # rates are per second over the time a bucket covered: together, every byte counted
        total = sum(p.traffic["world"]["out"] * p.seconds for p in past.points if p.traffic)
        assert total == pytest.approx(600_000)
        assert all(0 < p.seconds <= 61 for p in past.points)

        assert c.history("idle").points == []  # never running: no samples
        day = c.history("web", "day")
        assert day.step == 60 and day.points
        month = c.history("web", "month")
        assert month.step == 3600  # the current hour is rolled up when it ends
        host = c.history(None, "hour")
        assert host.instance is None and host.points

        with pytest.raises(ApiError) as bad:
            c.history("web", "week")
        assert bad.value.status == 400 and "hour, day, month" in bad.value.message
        with pytest.raises(ApiError) as missing:
            c.history("nosuch")
        assert missing.value.status == 404

    out = sampling.cli("stats", "web", "--history", "hour", check=True).stdout
    assert "web: the last hour, a sample per minute" in out
    assert "cpu %" in out and "world out" in out
    as_json = json.loads(sampling.cli("stats", "web", "--history", "day", "--format", "json",
                                      check=True).stdout)
    assert as_json["step"] == 60 and as_json["points"]
    assert "this host" in sampling.cli("host", "history", "hour", check=True).stdout
    refused = sampling.cli("stats", "web", "--history", "year")
    assert refused.returncode == 1 and "not one of: hour, day, month" in refused.stderr

    # an owner may not read the graphs (like `corral stats`): the same policy, one place
    token = add_user(sampling, "ann")
    with client_as(sampling, token) as ann, pytest.raises(ApiError) as forbidden:
        ann.history("web")
    assert forbidden.value.status == 403

    with sampling.client() as c:
        op = c.delete_instance("web", force=True)
        assert c.wait(op.id, timeout=30).status == "success"
        assert c.history(None, "hour").points == []  # the host's sum lost web's rows too


def test_operation_show_log_prints_the_operations_lines(daemon: Daemon) -> None:
    with daemon.client() as c:
        op = c.create_instance(CreateRequest(name="web", type="ct", template="tiny",
                                             start=True))
        assert c.wait(op.id, timeout=30).status == "success"
        c.set_policy({"disk": "100000"})  # admitted, then too big for the pool: fails late
        bad = c.create_instance(CreateRequest(name="big", type="ct", template="tiny",
                                              disk="100T"))
        assert c.wait(bad.id, timeout=30).status == "failure"
        lines = [ln.message for ln in c.operation_log(op.id)]
        assert lines[0] == "create web: started" and lines[-1] == "create web: succeeded"
    out = daemon.cli("operation", "show", op.id[:8], "--log", check=True).stdout
    assert "create web: started" in out and "INFO" in out
    failed = daemon.cli("operation", "show", bad.id, "--log", check=True).stdout
    assert "WARNING create big: failure:" in failed and "100T" in failed
    as_json = json.loads(daemon.cli("operation", "show", op.id, "--log", "--format", "json",
                                    check=True).stdout)
    assert as_json["operation"]["id"] == op.id
    assert [ln["seq"] for ln in as_json["log"]] == list(range(len(as_json["log"])))
    missing = daemon.cli("operation", "show", "nosuchop", "--log")
    assert missing.returncode == 1 and "nosuchop" in missing.stderr
    # the daemon logs at --log-level warning: the warning is in its log, with its fields
    logged = [json.loads(line) for line in (daemon.state_dir / "corrald.log").read_text()
              .splitlines() if line.startswith("{")]
    ours = [e for e in logged if e.get("operation") == bad.id]
    assert ours and ours[0]["instance"] == "big" and ours[0]["level"] == "warning"
    assert not [e for e in logged if e.get("operation") == op.id]  # info: not at warning
