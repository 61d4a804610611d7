"""`GET /api/v1/capacity` and `corral capacity` through the real daemon (fake driver)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import ApiError
from corral.wire.models import CreateRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template

GiB = 1024**3
SERVER: dict[str, str | float | int | bool | None] = {
    "host_cpus": 4, "host_memory": "32G", "host_disk": "1000G", "cpu_ratio": "4",
    "memory_ratio": "2", "disk_ratio": "4"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state: Path = tmp_path_factory.mktemp("corral-capacity")
    write_fake_template(state / "templates")
    d = start_daemon(state)
    try:
        yield d
    finally:
        stop_daemon(d)


def test_api_fits_cts_vms_and_mixes_and_says_its_sources(daemon: Daemon) -> None:
    with daemon.client() as c:
        none_running = c.capacity(**SERVER)
        assert none_running.sources["ct"] == "not measured (none running)"
        op = c.create_instance(CreateRequest(name="cap-ct", type="ct", template="tiny",
                                             start=True))
        assert c.wait(op.id, 30).status == "success"
        case = c.capacity(**SERVER, vm_overhead_memory="512M", vm_overhead_cpu=0.25)
    assert case.sources["ct"] == "measured on 1 running CT"  # the fake's charge: 0 above
    assert case.sources["vm"] == "given"
    assert case.host.cpu == 4 and case.host.memory == 32 * GiB
    ct, vm, *mixes = case.rows
    assert (ct.label, ct.cts, ct.binding) == ("ct", 16, "cpu")
    assert (vm.label, vm.vms, vm.binding) == ("vm", 8, "cpu")
    assert [m.vms for m in mixes] == [1, 3, 4, 5, 7]
    assert [m.cts for m in mixes] == [14, 10, 8, 6, 2]
    assert round(ct.per_vps.cost, 2) == round(293.2 / 16, 2)
    assert case.notes and "cluster" in case.notes[0]


def test_api_refuses_bad_inputs_by_name(daemon: Daemon) -> None:
    with daemon.client() as c:
        with pytest.raises(ApiError, match="memory ratio must be greater than 0"):
            c.capacity(memory_ratio="0")
        with pytest.raises(ApiError, match="host memory"):
            c.capacity(host_memory="lots")


def test_cli_reproduces_the_seeds_table(daemon: Daemon) -> None:
    got = daemon.cli("capacity", "--ct-count", "25", "--vm-count", "10", "--no-measure",
                     "--format", "json", check=True)
    rows = {r["label"]: r for r in json.loads(got.stdout)["rows"]}
    assert round(rows["vm"]["per_vps"]["cost"], 1) == 29.3
    assert round(rows["ct"]["per_vps"]["cost"], 1) == 11.7
    assert round(rows["vm"]["per_vps"]["gross"]) == 21
    assert round(rows["ct"]["per_vps"]["gross"]) == 38
    assert round(rows["vm"]["per_vps"]["net"]) == 6 and round(rows["ct"]["per_vps"]["net"]) == 23
    table = daemon.cli("capacity", "--ct-count", "25", "--vm-count", "10", "--no-measure",
                       check=True).stdout
    assert re.search(r"^25 CTs +given +\$11\.7 +\$38\.3 +\$23\.3 ", table, re.M)
    assert re.search(r"^10 VMs +given +\$29\.3 +\$20\.7 +\$5\.7 ", table, re.M)


def test_cli_table_chart_and_bench(daemon: Daemon, tmp_path: Path) -> None:
    chart = tmp_path / "case.svg"
    bench = tmp_path / "density.csv"
    bench.write_text(
        "cts,vms,host_mem_mib_per_inst,idle_cpu_pct_per_inst\n"
        "100,10,25.8181818,1.1909091\n"  # 2 MiB and 0.01 % per CT, 264 MiB and 13 % per VM
        "200,10,14.4761905,0.6285714\n")
    got = daemon.cli("capacity", "--host-cpus", "2", "--host-memory", "24G", "--memory", "256M",
                     "--disk", "2G", "--from-bench", str(bench), "--chart", str(chart),
                     check=True)
    out = got.stdout
    assert f"(bench {bench})" in out and "136M memory" in out  # 264 - 128 MiB
    assert f"chart: {chart}" in out
    root = ET.fromstring(chart.read_text())
    assert root.tag.endswith("svg")


def test_cli_errors_are_clear_and_nonzero(daemon: Daemon, tmp_path: Path) -> None:
    missing = daemon.cli("capacity", "--from-bench", str(tmp_path / "none.csv"))
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    bad = daemon.cli("capacity", "--from-bench", str(wrong))
    assert bad.returncode != 0 and "not a bench/density.py CSV" in bad.stderr
    png = daemon.cli("capacity", "--chart", str(tmp_path / "x.png"))
    assert png.returncode != 0 and "SVG" in png.stderr
    assert not (tmp_path / "x.png").exists()
    ratio = daemon.cli("capacity", "--disk-ratio", "-1")
    assert ratio.returncode != 0 and "disk ratio must be greater than 0" in ratio.stderr
