"""The REST API and SDK against a real corrald with the fake driver."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path

import httpx
import pytest

from corral.client import ApiError
from corral.wire.models import CreateRequest, Event, StopRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template


def _create(daemon: Daemon, name: str, type_: str = "ct", **kw: object) -> None:
    with daemon.client() as c:
        op = c.create_instance(CreateRequest(name=name, type=type_, template="tiny", **kw))  # type: ignore[arg-type]
        assert c.wait(op.id, timeout=30).status == "success"


def test_lifecycle_through_sdk(daemon: Daemon) -> None:
    _create(daemon, "web1", "ct", memory="256M", disk="1G")
    _create(daemon, "db1", "vm", cpus=2, memory="512M", disk="2G")
    with daemon.client() as c:
        listed = {i.name: i for i in c.list_instances()}
        assert listed["web1"].id == 101 and listed["db1"].id == 102
        assert listed["db1"].resources.cpus == 2
        assert listed["web1"].state == "stopped"
        for ref in ("web1", "102"):
            assert c.wait(c.action(ref, "start").id, 30).status == "success"
        assert c.get_instance("db1").state == "running"
        code, out, err = c.exec("web1", ["sh", "-c", "cat; echo oops >&2; exit 3"], b"in")
        assert (code, out, err) == (3, b"in", b"oops\n")
        assert c.wait(c.action("db1", "suspend").id, 30).status == "success"
        assert c.get_instance("db1").state == "suspended"
        assert c.wait(c.action("db1", "resume").id, 30).status == "success"
        op = c.action("web1", "stop", StopRequest(force=False, timeout=5))
        assert c.wait(op.id, 30).status == "success"
        assert c.get_instance("web1").state == "stopped"
        assert b"corral-guest-ready" in c.console_log("web1")
        assert c.wait(c.delete_instance("web1").id, 30).status == "success"
        assert c.wait(c.delete_instance("db1", force=True).id, 30).status == "success"
        assert c.list_instances() == []
    assert list((daemon.state_dir / "instances").iterdir()) == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "Bad_Name", "type": "ct"}, 400, "DNS label"),
        ({"name": "ok", "type": "ct", "memory": "256"}, 400, "no unit"),
        ({"name": "ok", "type": "ct", "cpus": 0}, 400, "at least 1"),
        ({"name": "ok", "type": "ct", "cpus": -2}, 400, "at least 1"),
        ({"name": "ok", "type": "ct", "disk": "1Q"}, 400, "unknown unit"),
        ({"name": "ok", "type": "box"}, 400, "not one of: ct, vm"),
        ({"name": "ok", "type": "ct", "template": "nope"}, 404, "unknown template 'nope'"),
    ],
)
def test_bad_create_leaves_nothing(daemon: Daemon, body: dict[str, object], status: int,
                                   says: str) -> None:
    body = {"template": "tiny", **body}
    with daemon.client() as c:
        with pytest.raises(ApiError) as err:
            c.create_instance(CreateRequest.model_validate(body))
        assert err.value.status == status
        assert says in err.value.message
        assert c.list_instances() == []
        assert c.list_operations() == []
    assert not (daemon.state_dir / "instances").exists() or not any(
        (daemon.state_dir / "instances").iterdir()
    )


def test_conflicts(daemon: Daemon) -> None:
    _create(daemon, "web1")
    with daemon.client() as c:
        with pytest.raises(ApiError, match="already exists") as err:
            c.create_instance(CreateRequest(name="web1", type="vm", template="tiny"))
        assert err.value.status == 409
        assert len(c.list_instances()) == 1
        c.wait(c.action("web1", "start").id, 30)
        with pytest.raises(ApiError, match="is running; use restart"):
            c.action("web1", "start")
        with pytest.raises(ApiError, match="--force"):
            c.delete_instance("web1")
        with pytest.raises(ApiError, match="no instance 'ghost'") as missing:
            c.action("ghost", "start")
        assert missing.value.status == 404
        c.wait(c.action("web1", "stop").id, 30)
        with pytest.raises(ApiError, match="start it first"):
            c.exec("web1", ["true"])


def test_token_auth_on_tcp(daemon: Daemon) -> None:
    from corral.client.tls import pinned_context

    cert = daemon.state_dir / "tls" / "cert.pem"  # TCP is TLS with a self-signed, pinned cert
    tls = pinned_context(cert.read_text())
    with pytest.raises(httpx.ConnectError):  # not trusted without the pin
        httpx.get(daemon.url + "/api/v1/instances")
    assert httpx.get(daemon.url + "/api/v1/instances", verify=tls).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert httpx.get(daemon.url + "/api/v1/instances", headers=bad, verify=tls).status_code == 401
    good = {"Authorization": f"Bearer {daemon.token}"}
    assert httpx.get(daemon.url + "/api/v1/instances", headers=good, verify=tls).json() == []
    from corral.client import CorralClient

    with CorralClient(url=daemon.url, token=daemon.token, tls_cert=str(cert)) as c:
        assert c.host_info().node == "test-node"


def test_openapi_published(daemon: Daemon) -> None:
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    spec = httpx.Client(transport=transport).get("http://corral/openapi.json").json()
    assert "/api/v1/instances" in spec["paths"]
    assert "/api/v1/operations/{op_id}" in spec["paths"]


def test_events_stream(daemon: Daemon) -> None:
    seen: list[Event] = []
    ready = threading.Event()

    def listen() -> None:
        with daemon.client() as c:
            stream = c.events()
            ready.set()
            for event in stream:
                seen.append(event)
                if event.type == "instance.created":
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    import time

    time.sleep(0.5)  # the websocket handshake happens on first iteration
    _create(daemon, "evt1")
    thread.join(15)
    types = [e.type for e in seen]
    assert "operation.created" in types and "instance.created" in types


def test_daemon_stops_promptly_with_a_quiet_events_stream_open(tmp_path: Path) -> None:
    """SIGTERM while a client listens to /events and nothing happens: corrald used to wait
    for the next event that never came (until the test's SIGKILL, 15 s later)."""
    write_fake_template(tmp_path / "templates")
    d = start_daemon(tmp_path)
    listening = threading.Event()

    def listen() -> None:
        with contextlib.suppress(Exception), d.client() as c:
            stream = c.events()
            listening.set()
            for _event in stream:
                pass

    thread = threading.Thread(target=listen, daemon=True)
    try:
        thread.start()
        assert listening.wait(5)
        _create(d, "quiet1")  # the stream is up (this event reached it), then quiet
        d.process.send_signal(signal.SIGTERM)
        assert d.process.wait(timeout=10) == 0
    finally:
        stop_daemon(d)
    thread.join(5)


def test_console_websocket(daemon: Daemon) -> None:
    _create(daemon, "con1")
    with daemon.client() as c:
        c.wait(c.action("con1", "start").id, 30)
        with c.console("con1") as ws:
            ws.send(b"hello console\n")
            assert ws.recv(timeout=5) == b"hello console\n"


def test_console_refused_when_stopped(daemon: Daemon) -> None:
    _create(daemon, "con2")
    with daemon.client() as c, c.console("con2") as ws:
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert "stopped" in str(closed.value)


def test_instances_survive_daemon_kill(daemon: Daemon) -> None:
    _create(daemon, "keep1")
    with daemon.client() as c:
        c.wait(c.action("keep1", "start").id, 30)
    stop_daemon(daemon, signal.SIGKILL)
    again = start_daemon(daemon.state_dir)
    try:
        with again.client() as c:
            listed = c.list_instances()
            assert [(i.name, i.state) for i in listed] == [("keep1", "running")]
            assert c.exec("keep1", ["echo", "hi"])[1] == b"hi\n"
            assert c.wait(c.action("keep1", "stop").id, 30).status == "success"
    finally:
        stop_daemon(again)


def test_list_json_matches_api(daemon: Daemon) -> None:
    _create(daemon, "j1")
    proc = daemon.cli("list", "--format", "json", check=True)
    assert [i["name"] for i in json.loads(proc.stdout)] == ["j1"]


def test_action_wait_answers_with_the_ended_operation(daemon: Daemon) -> None:
    """``?wait=`` holds the answer until the operation ended: one round trip for a start,
    the instance's new state already committed; without it the answer comes at once."""
    _create(daemon, "sync1")
    with daemon.client() as c:
        op = c.action("sync1", "start", wait=30)
        assert op.status == "success" and op.progress == 1.0
        assert c.get_instance("sync1").state == "running"
        op = c.action("sync1", "stop", StopRequest(force=True, timeout=0), wait=30)
        assert op.status == "success"
        assert c.get_instance("sync1").state == "stopped"
        queued = c.action("sync1", "start")  # no wait: answered at once
        assert c.wait(queued.id, 30).status == "success"
        assert c.action("sync1", "suspend", wait=30).status == "success"
        assert c.get_instance("sync1").state == "suspended"


def test_action_wait_refusals_and_bad_values(daemon: Daemon) -> None:
    _create(daemon, "sync2")
    with daemon.client() as c:
        with pytest.raises(ApiError) as refused:
            c.action("sync2", "stop", wait=30)  # stopped already: refused before any work
        assert refused.value.status in (409, 400)
        response = httpx.post(  # a bad wait value is the caller's error
            f"{daemon.url}/api/v1/instances/sync2/start", params={"wait": -1},
            headers={"Authorization": f"Bearer {daemon.token}"}, verify=False)
        assert response.status_code == 422


def test_list_and_stats_of_many_see_a_change_made_behind_corrals_back(daemon: Daemon) -> None:
    names = [f"many{i}" for i in range(4)]
    for name in names:
        _create(daemon, name, "ct", start=True)
    _create(daemon, "vm1", "vm", start=True)
    with daemon.client() as c:
        ids = {i.name: i.id for i in c.list_instances()}
        # The guest powers off on its own: the runtime says so, the database does not yet.
        (daemon.state_dir / "instances" / str(ids["many2"]) / "fake.json").write_text(
            json.dumps({"state": "stopped"}))
        listed = {i.name: i.state for i in c.list_instances()}
        assert listed == {**dict.fromkeys(names, "running"), "many2": "stopped",
                          "vm1": "running"}
        assert c.get_instance("many2").state == "stopped"  # the row was corrected
        running = {s.instance: s.running for s in c.all_stats()}
        assert running == {**dict.fromkeys(names, True), "many2": False, "vm1": True}
        up = [line for line in c.metrics().splitlines()
              if line.startswith("corral_instance_up{")]
        assert len(up) == 5 and sum(line.endswith(" 1") for line in up) == 4


def test_a_guest_stopped_behind_corrals_back_shows_why_until_its_next_start(
    daemon: Daemon,
) -> None:
    _create(daemon, "gone1", "ct", start=True)
    with daemon.client() as c:
        iid = c.get_instance("gone1").id
        assert c.get_instance("gone1").stop_reason is None
        (daemon.state_dir / "instances" / str(iid) / "fake.json").write_text(
            json.dumps({"state": "stopped"}))
        seen = c.get_instance("gone1")
        assert seen.state == "stopped" and seen.stop_reason is not None
        assert seen.stop_reason.startswith("stopped outside Corral")
        assert [i.stop_reason for i in c.list_instances() if i.name == "gone1"] == [
            seen.stop_reason]
        assert "stop reason" in daemon.cli("info", "gone1", check=True).stdout
        assert c.action("gone1", "start", wait=30).status == "success"
        assert c.get_instance("gone1").stop_reason is None
        assert c.action("gone1", "stop", wait=30).status == "success"
        assert c.get_instance("gone1").stop_reason is None  # Corral's own stop: no reason
