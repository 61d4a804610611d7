"""A cluster on an etcd spoken to in clear (http://): still works, but `cluster status` and
`host info` warn "etcd without TLS"; client-certificate options are refused for it, and
half-given ones anywhere, leaving nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.host.pki import make_ca
from tests.integration.conftest import start_daemon, stop_daemon
from tests.integration.etcd_lab import ETCD, etcd_lab

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd (etcd-server) is not installed")


def test_plain_http_etcd_works_with_a_warning_and_refuses_certificates(tmp_path: Path) -> None:
    creds = make_ca(tmp_path / "ca", "plain").issue_client("alpha").write(tmp_path / "client")
    host_dir = tmp_path / "alpha"
    host_dir.mkdir()
    with etcd_lab(tmp_path / "etcd", size=1, tls=False) as lab:
        d = start_daemon(host_dir, node="alpha")
        try:
            url = lab.endpoints[0]
            refused = d.cli("cluster", "init", "--etcd", url, "--etcd-ca", str(creds.ca),
                            "--etcd-cert", str(creds.cert), "--etcd-key", str(creds.key))
            assert refused.returncode != 0 and "need https://" in refused.stderr
            half = d.cli("cluster", "init", "--etcd", url.replace("http:", "https:"),
                         "--etcd-ca", str(creds.ca))
            assert half.returncode != 0 and "needs all three" in half.stderr
            missing = d.cli("cluster", "init", "--etcd", url, "--etcd-ca",
                            str(tmp_path / "nowhere.pem"))
            assert missing.returncode != 0 and "cannot read the etcd CA" in missing.stderr
            assert not (host_dir / "cluster-tls").exists()  # nothing half-made
            status = json.loads(d.cli("cluster", "status", "--format", "json").stdout)
            assert status["clustered"] is False

            made = d.cli("cluster", "init", "--etcd", url, "--format", "json")
            assert made.returncode == 0, made.stderr
            status = json.loads(made.stdout)
            assert status["clustered"] and not status["tls"] and not status["client_cert"]
            assert status["warnings"] and "etcd without TLS" in status["warnings"][0]
            shown = d.cli("cluster", "status")
            assert "etcd without TLS" in shown.stderr and "etcd TLS" in shown.stdout
            info = d.cli("host", "info")
            assert info.returncode == 0 and "etcd without TLS" in info.stderr
            assert "etcd without TLS" in json.loads(
                d.cli("host", "info", "--format", "json").stdout)["warnings"][0]
            assert d.cli("cluster", "leave").returncode == 0
            assert json.loads(d.cli("host", "info", "--format", "json").stdout)[
                "warnings"] == []
        finally:
            stop_daemon(d)
