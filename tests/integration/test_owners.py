"""Users, owners and access through a real corrald (fake driver): the admin on the Unix
socket, owners over TCP (TLS) with their own tokens, through the CLI and the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from corral.client import ApiError, CorralClient
from tests.integration.conftest import Daemon
from tests.integration.test_backups import disk_of, fill

MiB = 1 << 20


def cli_as(daemon: Daemon, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`corral …` as a remote user: CORRAL_URL + CORRAL_TOKEN + the pinned certificate."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_URL=daemon.url, CORRAL_TOKEN=token, COLUMNS="200",
               CORRAL_TLS_CERT=str(daemon.state_dir / "tls" / "cert.pem"))
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    for word in words:
        assert word in proc.stderr, proc.stderr


def add_user(daemon: Daemon, name: str, *extra: str) -> str:
    out = ok(daemon.cli("user", "add", name, *extra))
    token = out.strip().splitlines()[-1]
    assert token.startswith("crl_") and "only now" in out
    return token


def names(listing: str) -> list[str]:
    return sorted(i["name"] for i in json.loads(listing))


def client_as(daemon: Daemon, token: str) -> CorralClient:
    return CorralClient(url=daemon.url, token=token,
                        tls_cert=str(daemon.state_dir / "tls" / "cert.pem"))


@pytest.fixture
def tenants(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    """alice owns web, bob owns db, nobody owns ops; one backup of each in target nas."""
    tokens = {"alice": add_user(daemon, "alice"), "bob": add_user(daemon, "bob")}
    for name, owner in (("web", "alice"), ("db", "bob"), ("ops", None)):
        extra = ["--owner", owner] if owner else []
        daemon.cli("create", name, "--type", "ct", "--disk", "16M", *extra, check=True)
        fill(disk_of(daemon, name), 0, MiB)
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    for name in ("web", "db", "ops"):
        daemon.cli("backup", "create", name, "--to", "nas", check=True)
    return tokens


def backup_of(daemon: Daemon, instance: str) -> str:
    listed = json.loads(ok(daemon.cli("backup", "list", "--to", "nas", instance, "-f", "json")))
    return str(listed[-1]["id"])


def test_owners_see_and_restore_only_their_own(daemon: Daemon, tenants: dict[str, str],
                                               tmp_path: Path) -> None:
    alice, bob = tenants["alice"], tenants["bob"]
    shown = json.loads(ok(daemon.cli("list", "-f", "json")))
    assert {i["name"]: i["owner"] for i in shown} == {"web": "alice", "db": "bob", "ops": None}
    assert "alice" in ok(daemon.cli("info", "web"))
    assert "OWNER" in ok(daemon.cli("list"))

    # Instances: only their own; another's answers like a missing one.
    assert names(ok(cli_as(daemon, alice, "list", "-f", "json"))) == ["web"]
    assert names(ok(cli_as(daemon, bob, "list", "-f", "json"))) == ["db"]
    assert json.loads(ok(cli_as(daemon, alice, "info", "web", "-f", "json")))["owner"] == "alice"
    refused(cli_as(daemon, alice, "info", "db"), "no instance 'db'")
    refused(cli_as(daemon, alice, "info", "ops"), "no instance 'ops'")
    assert "alice (owner)" in ok(cli_as(daemon, alice, "whoami"))

    # Backups: only those of their instances; the owner is recorded in the manifest.
    web_backup, db_backup = backup_of(daemon, "web"), backup_of(daemon, "db")
    mine = json.loads(ok(cli_as(daemon, alice, "backup", "list", "--to", "nas", "-f", "json")))
    assert [(b["instance"], b["owner"]) for b in mine] == [("web", "alice")]
    assert "alice" in ok(cli_as(daemon, alice, "backup", "info", web_backup, "--to", "nas"))
    refused(cli_as(daemon, alice, "backup", "info", db_backup, "--to", "nas"),
            f"no backup '{db_backup}'")
    refused(cli_as(daemon, alice, "restore", db_backup, "--to", "nas", "--as", "mine"),
            f"no backup '{db_backup}'")
    refused(cli_as(daemon, alice, "backup", "list", "--to", str(tmp_path / "nas")),
            "only the backup targets an administrator added")
    refused(cli_as(daemon, alice, "backup", "list", "--to", "nas", "--key-file", "/etc/shadow"),
            "may not name a key file")
    refused(cli_as(daemon, alice, "backup", "create", "db", "--to", "nas"), "no instance 'db'")

    # Their own backup: create one, restore it in place (stopped) and as a new instance.
    ok(cli_as(daemon, alice, "backup", "create", "web", "--to", "nas"))
    disk = disk_of(daemon, "web")
    before = disk.read_bytes()
    fill(disk, 0, MiB)
    ok(cli_as(daemon, alice, "restore", web_backup, "--to", "nas"))
    assert disk_of(daemon, "web").read_bytes() == before
    ok(cli_as(daemon, alice, "restore", web_backup, "--to", "nas", "--as", "web2"))
    assert names(ok(cli_as(daemon, alice, "list", "-f", "json"))) == ["web", "web2"]
    assert disk_of(daemon, "web2").read_bytes() == before
    ops = json.loads(ok(cli_as(daemon, alice, "operation", "list", "-f", "json")))
    assert ops and {o["requested_by"] for o in ops} == {"alice"}
    assert {o["action"] for o in ops} >= {"backup", "restore", "create"}
    assert not json.loads(ok(cli_as(daemon, bob, "operation", "list", "-f", "json")))
    refused(cli_as(daemon, bob, "operation", "show", ops[0]["id"]), "no operation")

    # An owner cannot restore over another owner's instance with the same name.
    daemon.cli("owner", "web", "bob", check=True)
    refused(cli_as(daemon, alice, "restore", web_backup, "--to", "nas"), "not yours")
    assert names(ok(cli_as(daemon, bob, "list", "-f", "json"))) == ["db", "web"]
    daemon.cli("owner", "web", "alice", check=True)


ADMIN_ONLY = [
    (("network", "delete", "lan"), "may not delete network"),
    (("host", "policy", "cpu=4"), "may not change the over-commitment policy"),
    (("user", "add", "eve"), "may not add user"),
    (("user", "list"), "may not list users"),
    (("delete", "web"), "may not delete instance"),
    (("start", "web"), "may not start instance"),
    (("snapshot", "create", "web", "s1"), "may not create snapshot"),
    (("backup", "prune", "--to", "nas", "--keep-last", "1"), "may not prune backups"),
    (("backup", "delete", "x", "--to", "nas"), "may not delete backup"),
    (("backup", "target", "add", "t2", "/tmp/t2"), "may not add target"),
    (("owner", "web", "bob"), "may not set owner"),
    (("host", "info"), "may not see the host's information"),
    (("capacity",), "may not see the capacity and business case"),
    (("operation", "cancel", "0000"), "may not cancel operation"),
    (("exec", "web", "--", "true"), "may not exec in instance"),
    (("backup", "schedule", "set", "web", "--to", "nas", "--daily", "03:00"),
     "may not set schedule"),
]


def test_admin_only_actions_are_forbidden_for_owners(daemon: Daemon,
                                                     tenants: dict[str, str]) -> None:
    backups = ok(daemon.cli("backup", "list", "--to", "nas", "-f", "json"))
    for args, words in ADMIN_ONLY:
        refused(cli_as(daemon, tenants["alice"], *args), f"user 'alice' (owner) {words}")
    assert names(ok(daemon.cli("list", "-f", "json"))) == ["db", "ops", "web"]
    assert ok(daemon.cli("backup", "list", "--to", "nas", "-f", "json")) == backups
    assert "web" not in ok(daemon.cli("backup", "schedule", "list"))
    assert ok(daemon.cli("user", "list", "-f", "json")).count('"name"') == 2


def test_status_codes_events_and_the_daemon_token(daemon: Daemon,
                                                  tenants: dict[str, str]) -> None:
    with client_as(daemon, tenants["alice"]) as c:
        with pytest.raises(ApiError) as forbidden:
            c.delete_network("lan")
        assert forbidden.value.status == 403 and forbidden.value.code == "forbidden"
        with pytest.raises(ApiError) as hidden:
            c.get_instance("db")
        assert hidden.value.status == 404
        with pytest.raises(ApiError) as closed:
            next(iter(c.events()))
        assert closed.value.status == 403
        assert "user 'alice' (owner) may not watch events" in closed.value.message
        with c.console("web") as ws, pytest.raises(ConnectionClosed) as console:
            ws.recv()
        assert console.value.rcvd is not None and console.value.rcvd.code == 4403
        assert "may not open consoles" in console.value.rcvd.reason
    refused(cli_as(daemon, tenants["alice"], "monitor"), "may not watch events")
    assert "nas" in ok(cli_as(daemon, tenants["alice"], "backup", "target", "list"))
    with client_as(daemon, daemon.token) as c:  # operators and migration peers: admin
        assert sorted(i.name for i in c.list_instances()) == ["db", "ops", "web"]


def test_tokens_rotate_and_die_with_their_user(daemon: Daemon, tenants: dict[str, str]) -> None:
    old = tenants["bob"]
    out = ok(daemon.cli("user", "token", "bob"))
    new = out.strip().splitlines()[-1]
    assert new != old and new.startswith("crl_")
    refused(cli_as(daemon, old, "list"), "missing or wrong API token")
    assert names(ok(cli_as(daemon, new, "list", "-f", "json"))) == ["db"]

    refused(daemon.cli("user", "remove", "alice"), "still owns web")
    daemon.cli("owner", "web", "--none", check=True)
    ok(daemon.cli("user", "remove", "alice"))
    refused(cli_as(daemon, tenants["alice"], "list"), "missing or wrong API token")
    listed = ok(daemon.cli("user", "list", "-f", "json"))
    assert [(u["name"], u["instances"]) for u in json.loads(listed)] == [("bob", ["db"])]

    # The removed owner's backup stays (admins see it); restored, it belongs to no one.
    web_backup = backup_of(daemon, "web")
    ok(daemon.cli("restore", web_backup, "--to", "nas", "--as", "web3"))
    assert json.loads(ok(daemon.cli("info", "web3", "-f", "json")))["owner"] is None
    # An admin user's token is an administrator's.
    admin = add_user(daemon, "carol", "--role", "admin")
    assert names(ok(cli_as(daemon, admin, "list", "-f", "json"))) == ["db", "ops", "web",
                                                                       "web3"]
    assert "carol" in ok(cli_as(daemon, admin, "user", "list"))
    raw = httpx.get(daemon.url + "/api/v1/whoami", headers={"Authorization": "Bearer crl_x"},
                    verify=False)
    assert raw.status_code == 401


def test_bad_names_and_unknown_owners_are_clear_errors(daemon: Daemon) -> None:
    refused(daemon.cli("user", "add", "Bad_Name"), "user name 'Bad_Name' is not a DNS label")
    refused(daemon.cli("user", "add", "123"), "all digits")
    refused(daemon.cli("user", "add", "dave", "--role", "king"), "role 'king' is not one of")
    add_user(daemon, "dave")
    refused(daemon.cli("user", "add", "dave"), "already exists")
    refused(daemon.cli("create", "x", "--type", "ct", "--owner", "nobody"), "no user 'nobody'")
    assert names(ok(daemon.cli("list", "-f", "json"))) == []  # nothing half-made
    daemon.cli("create", "y", "--type", "ct", check=True)
    refused(daemon.cli("owner", "y", "nobody"), "no user 'nobody'")
    refused(daemon.cli("owner", "y"), "name a user, or --none")
    refused(daemon.cli("owner", "y", "dave", "--none"), "name a user, or --none")
    refused(daemon.cli("user", "token", "nobody"), "no user 'nobody'")
    refused(daemon.cli("user", "remove", "nobody"), "no user 'nobody'")
    assert "y: owner dave" in ok(daemon.cli("owner", "y", "dave"))
    assert json.loads(ok(daemon.cli("info", "y", "-f", "json")))["owner"] == "dave"


def cli_env(daemon: Daemon, **env: str) -> subprocess.CompletedProcess[str]:
    """`corral whoami` with exactly the CORRAL_* variables given (plus CORRAL_SOCKET)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    clean.update(CORRAL_SOCKET=str(daemon.socket), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "corral.cli.main", "whoami"],
                          capture_output=True, text=True, env=clean, timeout=60, check=False)


def test_the_cli_says_which_identity_it_uses_and_why(daemon: Daemon) -> None:
    alice = add_user(daemon, "alice")
    daemon.cli("create", "web", "--type", "ct", "--disk", "16M", "--owner", "alice", check=True)
    daemon.cli("create", "ops", "--type", "ct", "--disk", "16M", check=True)

    root = ok(cli_env(daemon))
    assert root.splitlines() == [
        "local root (Unix socket): admin",
        f"  on the Unix socket {daemon.socket} without a token (CORRAL_TOKEN is not set): "
        "root on this host is an administrator there"]
    # CORRAL_TOKEN without CORRAL_URL: the token is used on the socket, not ignored.
    as_alice = ok(cli_env(daemon, CORRAL_TOKEN=alice))
    assert as_alice.splitlines() == [
        "alice (owner)",
        f"  on the Unix socket {daemon.socket} with the token in CORRAL_TOKEN (unset it to act "
        "as local root)"]
    with CorralClient(socket=str(daemon.socket), token=alice) as c:
        assert [i.name for i in c.list_instances()] == ["web"]
    daemon_token = ok(cli_env(daemon, CORRAL_TOKEN=daemon.token))
    assert daemon_token.splitlines()[0] == "the daemon's API token: admin"
    refused(cli_env(daemon, CORRAL_TOKEN="crl_wrong"),
            "wrong API token (CORRAL_TOKEN)", "unset it to act as local root")
    remote = ok(cli_env(daemon, CORRAL_URL=daemon.url, CORRAL_TOKEN=alice,
                        CORRAL_TLS_CERT=str(daemon.state_dir / "tls" / "cert.pem")))
    assert remote.splitlines() == [
        "alice (owner)", f"  at {daemon.url} with the token in CORRAL_TOKEN"]


def test_the_listener_serves_tls_with_the_certificate_in_the_state_dir(daemon: Daemon) -> None:
    """What README and setup.sh tell clients: the certificate is STATE_DIR/tls/cert.pem."""
    import ssl

    host, port = daemon.url.removeprefix("https://").rsplit(":", 1)
    presented = ssl.get_server_certificate((host, int(port)))
    on_disk = (daemon.state_dir / "tls" / "cert.pem").read_text()
    assert ssl.PEM_cert_to_DER_cert(presented) == ssl.PEM_cert_to_DER_cert(on_disk)
    with pytest.raises(httpx.TransportError):  # no plain HTTP there: the TLS handshake fails
        httpx.get(daemon.url.replace("https://", "http://") + "/api/v1/whoami")
    with CorralClient(url=daemon.url, token=daemon.token,
                      tls_cert=str(daemon.state_dir / "tls" / "cert.pem")) as c:
        assert c.host_info().node == "test-node"
