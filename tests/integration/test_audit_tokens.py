"""Scoped tokens (read-only, limited to instances) and the audit log, through a real corrald
(fake driver): tokens used over TCP (TLS), the log read back with its filters. Most calls go
straight to the API (each CLI run costs a Python start); the CLI makes and lists tokens and
reads the log."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Daemon, stop_daemon
from tests.integration.test_owners import cli_as, ok, refused


class Api:
    """Plain calls over TCP (TLS, the daemon's certificate pinned) with one token, or over
    the Unix socket as local root (token None)."""

    def __init__(self, daemon: Daemon, token: str | None) -> None:
        if token is None:
            self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                                     base_url="http://corral", timeout=30)
        else:
            self.http = httpx.Client(base_url=daemon.url, timeout=30,
                                     verify=ssl.create_default_context(
                                         cafile=str(daemon.state_dir / "tls" / "cert.pem")),
                                     headers={"Authorization": f"Bearer {token}"})

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, f"/api/v1/{path}", json=body, params=params)
        if response.status_code >= 400:
            raise Refused(response.status_code, response.json()["message"])
        return response.json() if response.content else None

    def refused(self, status: int, words: str, method: str, path: str, body: Any = None,
                **params: Any) -> None:
        with pytest.raises(Refused) as caught:
            self(method, path, body, **params)
        assert caught.value.status == status and words in caught.value.message, caught.value


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status, self.message = status, message


@pytest.fixture
def root(daemon: Daemon) -> Iterator[Api]:
    api = Api(daemon, None)
    yield api
    api.http.close()


def names(found: list[dict[str, Any]]) -> list[str]:
    return sorted(str(i["name"]) for i in found)


def test_scoped_tokens_and_the_audit_log(daemon: Daemon, root: Api) -> None:
    alice = Api(daemon, root("POST", "users", {"name": "alice"})["token"])
    root("POST", "users", {"name": "ops", "role": "admin"})
    for name, owner in (("web1", "alice"), ("web2", "alice"), ("db", None)):
        root("POST", "instances", {"name": name, "type": "container", "template": "tiny",
                                   "owner": owner})

    # A read-only token of alice (made with the CLI): sees what alice sees, changes nothing.
    out = ok(daemon.cli("token", "create", "--user", "alice", "--read-only"))
    assert "only now" in out and "read-only" in out
    ro_id, ro_secret = out.split("Token ", 1)[1].split()[0], out.strip().splitlines()[-1]
    ro = Api(daemon, ro_secret)
    assert names(ro("GET", "instances")) == ["web1", "web2"]
    who = ro("GET", "whoami")
    assert (who["name"], who["token"], who["read_only"]) == ("alice", ro_id, True)
    ro.refused(403, "the token is read-only", "POST", "backups",
               {"instance": "web1", "target": "nas"})
    ro.refused(403, "read-only", "POST", "tokens", {"read_only": True})

    # An admin's token limited to web1: full rights there, nothing elsewhere.
    scoped = root("POST", "tokens", {"user": "ops", "instances": ["web1"]})
    only_web1 = Api(daemon, scoped["secret"])
    assert names(only_web1("GET", "instances")) == ["web1"]
    only_web1("POST", "instances/web1/start")
    only_web1.refused(404, "no instance 'web2'", "POST", "instances/web2/start")
    only_web1.refused(404, "no instance 'db'", "GET", "instances/db")
    only_web1.refused(403, "limited to web1", "GET", "networks")
    only_web1.refused(403, "may not make tokens", "POST", "tokens",
                      {"user": "ops", "read_only": True})
    web1_id = root("GET", "instances/web1")["id"]
    db_id = root("GET", "instances/db")["id"]
    only_web1.refused(404, "no instance", "POST", f"instances/{db_id}/stop")  # by id
    only_web1("POST", f"instances/{web1_id}/stop")

    # Owners make tokens for themselves only.
    own = alice("POST", "tokens", {"instances": ["web2"]})
    assert own["token"]["user"] == "alice"
    alice.refused(403, "only for itself", "POST", "tokens", {"user": "ops", "read_only": True})
    assert names(Api(daemon, own["secret"])("GET", "instances")) == ["web2"]
    listed = json.loads(ok(cli_as(daemon, alice.http.headers["authorization"][7:], "token",
                                  "list", "-f", "json")))
    assert sorted(t["id"] for t in listed) == sorted([ro_id, own["token"]["id"]])
    root.refused(400, "read-only (--read-only), limited to named instances", "POST", "tokens",
                 {"user": "alice"})

    # Revoked: the token stops working at once.
    root("DELETE", f"tokens/{ro_id}")
    with pytest.raises(httpx.HTTPError):
        ro.http.get("/api/v1/instances").raise_for_status()

    # The audit log (read with the CLI): every mutating call, who, from where, what, result.
    ops = json.loads(ok(daemon.cli("audit", "--user", "ops", "-f", "json")))
    assert [(e["action"], e["instance"], e["result"], e["status"]) for e in reversed(ops)] == [
        ("start_instance", "web1", "ok", 202), ("start_instance", "web2", "refused", 404),
        ("create_token", None, "refused", 403),
        ("stop_instance", str(db_id), "refused", 404),
        ("stop_instance", str(web1_id), "ok", 202)]
    assert all(str(e["source"]).startswith("127.0.0.1:") for e in ops)
    assert {e["token"] for e in ops} == {scoped["token"]["id"]}
    assert ops[-2]["message"] == "no instance 'web2'"
    created = root("GET", "audit", action="create_instance")
    assert sorted(e["instance"] for e in created) == ["db", "web1", "web2"]
    assert {(e["user"], e["source"]) for e in created} == {
        ("local root (Unix socket)", "unix socket")}
    by_alice = root("GET", "audit", user="alice", since="1h")  # reads are not logged
    assert [(e["action"], e["result"], e["token"]) for e in reversed(by_alice)] == [
        ("create_backup", "refused", ro_id), ("create_token", "refused", ro_id),
        ("create_token", "ok", None), ("create_token", "refused", None)]
    assert {e["result"] for e in root("GET", "audit", result="refused")} == {"refused"}
    assert [e["action"] for e in root("GET", "audit", instance="web2")] == [
        "start_instance", "create_instance"]
    assert root("GET", "audit", since="2999-01-01T00:00:00") == []
    assert all(e["method"] != "GET" for e in root("GET", "audit"))
    root.refused(400, "ok, refused, failed", "GET", "audit", result="maybe")
    root.refused(400, "30m, 2h", "GET", "audit", since="yesterday")

    # Administrators only.
    alice.refused(403, "may not list audit", "GET", "audit")
    only_web1.refused(403, "may not list audit", "GET", "audit")
    refused(cli_as(daemon, scoped["secret"], "audit"), "may not list audit")

    # SIGTERM with these TLS clients still connected and idle: corrald exits by itself (it
    # waited for each one's TLS close_notify, 30 s, and was killed at stop_daemon's 15 s)
    stop_daemon(daemon)
    assert daemon.process.returncode == 0, daemon.process.returncode
