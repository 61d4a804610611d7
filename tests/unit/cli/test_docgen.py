"""The completion tree and the man pages made from the CLI (corral.cli.docgen)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from corral.cli import docgen
from corral.cli.main import app

README = Path(__file__).resolve().parents[3] / "README.md"


def _groups() -> dict[str, Any]:
    root: Any = typer.main.get_command(app)
    return {n: c for n, c in root.commands.items() if hasattr(c, "commands")}


def test_the_stored_tree_is_the_clis() -> None:
    stored = json.loads(docgen.TREE_FILE.read_text())
    assert stored == json.loads(json.dumps(docgen.tree())), (
        "cli/tree.json is stale: python -m corral.cli.docgen tree > src/corral/cli/tree.json")


def test_name_arguments_have_kinds() -> None:
    tree = docgen.tree()["commands"]
    assert tree["start"]["args"][0]["kind"] == "instance"
    assert [a.get("kind") for a in tree["snapshot"]["commands"]["revert"]["args"]] == [
        "instance", "snapshot"]
    assert tree["backup"]["commands"]["info"]["args"][0]["kind"] == "backup"
    assert tree["storage"]["commands"]["info"]["args"][0]["kind"] == "pool"
    assert tree["network"]["commands"]["delete"]["args"][0]["kind"] == "network"
    assert tree["template"]["commands"]["info"]["args"][0]["kind"] == "template"
    assert tree["create"]["options"]["--template"]["kind"] == "template"
    assert tree["create"]["options"]["--type"]["choices"] == ["ct", "vm"]
    assert "kind" not in tree["create"]["args"][0]  # a new name: nothing to complete
    # every kind named in the tree is one completion knows how to ask for
    kinds: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        for spec in [*node.get("args", []), *node.get("options", {}).values()]:
            if "kind" in spec:
                kinds.add(spec["kind"])
        for sub in node.get("commands", {}).values():
            walk(sub)

    walk(docgen.tree())
    assert kinds <= set(docgen.KINDS)


def test_every_command_group_has_a_page_with_its_commands() -> None:
    pages = docgen.man_pages(README.read_text())
    groups = _groups()
    assert set(pages) == {"corral.1", *(f"corral-{g}.1" for g in groups)}
    for name, group in groups.items():
        page = pages[f"corral-{name}.1"]
        for sub in group.commands:
            assert f"corral {name}" in page.replace("\\-", "-")
            assert sub.replace("-", "\\-") in page
    for top in ("create", "start", "exec", "migrate", "restore"):
        assert f".B corral {top}" in pages["corral.1"]


def test_readme_tour_lines_are_the_examples() -> None:
    pages = docgen.man_pages(README.read_text())
    snapshot = pages["corral-snapshot.1"].replace("\\-", "-")
    assert ".SH EXAMPLES" in snapshot
    assert "corral snapshot create db1 before-upgrade --memory" in snapshot
    assert "corral create web1 --type ct --template tiny" in pages["corral.1"].replace("\\-", "-")
    # a line using two groups is an example of both
    both = "corral template build tiny; corral template export tiny ./tiny.corral-template"
    assert both in pages["corral-template.1"].replace("\\-", "-")


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_pages_render_without_groff_warnings(tmp_path: Path) -> None:
    assert docgen.main(["man", "--readme", str(README), str(tmp_path)]) == 0
    for page in sorted(tmp_path.iterdir()):
        proc = subprocess.run(["groff", "-man", "-ww", "-z", str(page)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and proc.stderr == "", (page.name, proc.stderr)
