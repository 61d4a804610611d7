"""`corral capacity`'s table and SVG chart (pure: from a wire model)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from corral.cli.capacity import render, svg
from corral.cli.chart import Panel, bars
from corral.domain.capacity import Amounts, CaseInput, Ratios, business_case
from corral.services.capacity_case import Answer

GiB = 1024**3


def _case() -> object:
    from corral.api.capacity import model  # the API's own conversion to the wire model

    given = CaseInput(host=Amounts(4, 32 * GiB, 1000 * GiB), size=Amounts(1, GiB, 10 * GiB),
                      ratios=Ratios(cpu=4, memory=2, disk=4), ct_overhead=Amounts(),
                      vm_overhead=Amounts(0.25, GiB / 2, 0))
    return model(Answer(business_case(given), given, {"host": "given", "policy": "given",
                                                      "ct": "given", "vm": "given"},
                        ("one server",)))


def test_the_table_names_counts_binding_and_money(capsys: pytest.CaptureFixture[str]) -> None:
    render(_case())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("server costs") and "$293.2/month" in line
               and "400 W at $0.15/kWh" in line for line in lines)
    assert any(line.startswith("policy") and "cpu 4:1, memory 2:1, disk 4:1" in line
               for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("PER SERVER"))
    ct_row, vm_row = lines[header + 1].split(), lines[header + 2].split()
    assert ct_row[:3] == ["16", "CTs", "cpu"]
    assert ct_row[3:6] == ["$18.3", "$31.7", "$16.7"]  # 293.2 / 16; 50 - that; - 15
    assert ct_row[6:] == ["$800", "$267"]  # 16 x 50 - 293.2 - 16 x 15
    assert vm_row[:3] == ["8", "VMs", "cpu"]
    assert vm_row[5] == "-$1.6"  # 293.2 / 8 = 36.65 cost: a VM loses money here
    assert lines[header + 3].startswith("14 CTs + 1 VMs")  # what 1 VM leaves: 3.5 CPUs
    assert lines[-1] == "note: one server"


def test_render_says_where_an_overhead_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    render(_case(), {"vm": "bench density.csv"})  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert any(line.startswith("VM overhead") and "(bench density.csv)" in line
               for line in out.splitlines())


def test_the_chart_is_svg_with_a_bar_and_a_value_per_row_and_panel() -> None:
    case = _case()
    root = ET.fromstring(svg(case))  # type: ignore[arg-type]
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    texts = [t.text for t in root.iter(f"{ns}text")]
    rows = len(case.rows)  # type: ignore[attr-defined]
    bars_drawn = [r for r in root.iter(f"{ns}rect") if r.get("fill") != "white"]
    assert len(bars_drawn) == 3 * rows
    assert "16 CTs" in texts and "8 VMs" in texts and "-$1.6" in texts
    assert "net profit per server ($/month)" in texts


def test_bars_escape_text_and_refuse_mismatched_panels() -> None:
    text = bars("a < b & c", ["x"], [Panel("p", [1.0], str)])
    assert "a &lt; b &amp; c" in text
    ET.fromstring(text)
    with pytest.raises(ValueError, match="2 values for 1 rows"):
        bars("t", ["x"], [Panel("p", [1.0, 2.0], str)])
