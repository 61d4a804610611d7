"""/metrics of a real corrald (fake driver) checked by Prometheus's own linter, promtool,
scraped the way Prometheus does: over the TLS listener with a bearer token; and the Grafana
dashboard in packaging/grafana checked against that scrape (every query names exported
metrics) and against promtool's PromQL parser."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.wire.models import CreateRequest
from tests.integration.conftest import (
    Daemon,
    free_port,
    start_daemon,
    stop_daemon,
    write_fake_template,
)

PROMTOOL = shutil.which("promtool")
DASHBOARD = Path(__file__).parents[2] / "packaging" / "grafana" / "corral-dashboard.json"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state: Path = tmp_path_factory.mktemp("corral-metrics")
    write_fake_template(state / "templates")
    ksm = state / "fake-ksm"  # a fake-driver daemon reads KSM's sysfs files from here
    ksm.mkdir()
    for name, value in (("run", 1), ("pages_shared", 5), ("pages_sharing", 20)):
        (ksm / name).write_text(f"{value}\n")
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


def trust(d: Daemon) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(d.state_dir / "tls" / "cert.pem"))


def scrape(d: Daemon, token: str | None = None) -> str:
    """As Prometheus scrapes: HTTPS to the TLS listener, the daemon's CA, a bearer token."""
    response = httpx.get(f"{d.url}/metrics", verify=trust(d),
                         headers={"Authorization": f"Bearer {token or d.token}"}, timeout=30)
    response.raise_for_status()
    return response.text


def test_scrape_needs_the_token(daemon: Daemon) -> None:
    response = httpx.get(f"{daemon.url}/metrics", timeout=30,
                         verify=trust(daemon))
    assert response.status_code == 401


def test_a_read_only_operator_token_scrapes(daemon: Daemon) -> None:
    """The README's set-up: an operator user, a read-only token for Prometheus."""
    daemon.cli("user", "add", "prom-metrics", "--role", "operator", check=True)
    out = daemon.cli("token", "create", "--user", "prom-metrics", "--read-only", check=True)
    token = re.search(r"crl_\S+", out.stdout)
    assert token is not None, out.stdout
    assert "corral_instances{" in scrape(daemon, token.group())


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
        'corral_host_ksm_available 1',
        'corral_host_ksm_pages_sharing 20',
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


# PromQL words that are not metric names (functions are told apart by their "(")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: drop strings, label matchers, ranges and grouping
    label lists; what is left that is an identifier and not a function call is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENT.finditer(text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def exported(text: str) -> set[str]:
    """Names a scrape exports: every sample's name and every family's TYPE line."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    names |= {IDENT.match(line).group() for line in text.splitlines()  # type: ignore[union-attr]
              if line and not line.startswith("#")}
    return names


def test_metric_names_parser() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le, action) (rate('
                        'a_bucket{host=~"$host",x="y{z}"}[5m])))') == {"a_bucket"}
    assert metric_names("a / b > 0 and on (host) c") == {"a", "b", "c"}
    assert metric_names('label_values(corral_up{host=~"$host"}, instance)') == {"corral_up",
                                                                                "instance"}


def test_every_dashboard_query_names_exported_metrics(daemon: Daemon) -> None:
    names = exported(scrape(daemon))
    queries = dashboard_queries()
    assert len(queries) >= 15
    for expr in queries:
        if expr.startswith("label_values("):  # label_values(selector, label): the selector
            expr = expr[len("label_values("):].rsplit(",", 1)[0]
        used = metric_names(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= names, f"{sorted(used - names)} in {expr!r} are not exported"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), Grafana's variables filled in."""
    assert PROMTOOL is not None
    rules = []
    for i, expr in enumerate(q for q in dashboard_queries() if not q.startswith("label_values")):
        filled = expr.replace("$__rate_interval", "5m").replace("$host", ".*")
        rules.append({"record": f"corral:dashboard_{i}", "expr": filled.replace("$instance", ".*")})
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                             timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


PROMETHEUS = shutil.which("prometheus")


def readme_scrape_config() -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Prometheus and Grafana", 1)[1].split("```yaml\n", 1)[1]
    return block.split("```", 1)[0]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian: prometheus)")
def test_prometheus_scrapes_with_the_readme_config(daemon: Daemon, tmp_path: Path) -> None:
    """A real Prometheus with the README's scrape config (paths and target filled in)."""
    assert PROMETHEUS is not None
    daemon.cli("user", "add", "prom-e2e", "--role", "operator", check=True)
    out = daemon.cli("token", "create", "--user", "prom-e2e", "--read-only", check=True)
    token = re.search(r"crl_\S+", out.stdout)
    assert token is not None, out.stdout
    (tmp_path / "corral.token").write_text(token.group())
    shutil.copy(daemon.state_dir / "tls" / "cert.pem", tmp_path / "corral-ca.pem")
    target = daemon.url.removeprefix("https://")
    config = (readme_scrape_config()
              .replace("/etc/prometheus/", f"{tmp_path}/")
              .replace('"host1:8443", "host2:8443"', f'"{target}"'))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n" + config)
    web = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={web}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
    try:
        query = 'corral_instances{job="corral",type="vm",state="running"}'
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                answer = httpx.get(f"http://{web}/api/v1/query", params={"query": query},
                                   timeout=5)
                if answer.status_code == 200:  # 503 until its storage is ready
                    found = answer.json()["data"]["result"]
            time.sleep(0.5)
        assert found, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert found[0]["metric"]["host"] == "127.0.0.1" and found[0]["value"][1] == "1"
        guest = httpx.get(f"http://{web}/api/v1/query", timeout=5,
                          params={"query": 'corral_instance_up{instance="mvm1"}'}).json()
        assert guest["data"]["result"], guest  # honor_labels: the guest's name kept
    finally:
        process.terminate()
        process.wait(15)
