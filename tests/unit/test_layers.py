"""The layer rules of docs/architecture.md ("Layers"), checked on every import in src/corral.

Each package of ``corral`` may import only the packages its rule names (data flows down,
never up). The walk reads every module with ``ast`` -- module-level, function-local and
``TYPE_CHECKING`` imports alike, relative ones resolved -- so a crossing fails here the day
it is written, naming the file, the import and the rule. ``corral`` itself (the version) may
be imported by anyone and imports nothing.

``web`` sits beside ``api`` (services, through the API's gate: ``api.identity``,
``api.deps``, and ``api.streams``: the one websocket bridge to a shared console);
``cluster`` sits below ``services`` beside ``state`` (services use its store;
docs/architecture.md, "Layers").
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import corral

SRC = Path(corral.__file__).parent

ANYTHING = frozenset({"*"})

RULES: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "wire": frozenset({"domain"}),
    "host": frozenset({"domain"}),
    "storage": frozenset({"domain", "host"}),
    "network": frozenset({"domain", "host"}),
    "templates": frozenset({"domain", "host"}),
    "state": frozenset({"domain"}),
    "drivers": frozenset({"domain", "host", "storage", "network", "templates"}),
    "backup": frozenset({"domain", "host", "storage"}),
    "migration": frozenset({"domain", "host", "wire", "client"}),
    "services": frozenset({"drivers", "storage", "network", "state", "backup", "templates",
                           "migration", "host", "wire", "domain", "client", "cluster"}),
    "api": frozenset({"services", "wire", "domain"}),
    "client": frozenset({"wire", "domain"}),
    "cli": frozenset({"client", "wire", "domain"}),
    "web": frozenset({"services", "api.identity", "api.deps", "api.streams", "wire", "domain"}),
    # a future package: its place is decided now
    "cluster": frozenset({"domain", "host", "wire", "client", "state"}),
    "daemon": ANYTHING,
}
"""Package -> what it may import besides itself: packages, or dotted modules (``api.deps``:
that module of ``api`` only -- the web may pass through the API's gate, nothing else of it)."""


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    target: str  # dotted, without the leading "corral."

    def __str__(self) -> str:
        return f"{self.file.relative_to(SRC.parent)}:{self.line} imports corral.{self.target}"


def _module_name(file: Path) -> list[str]:
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(file: Path, text: str | None = None) -> list[Import]:
    """Every ``corral`` import in ``file`` (or in ``text`` as if it were that file)."""
    tree = ast.parse(file.read_text() if text is None else text, filename=str(file))
    package = _module_name(file) if file.name == "__init__.py" else _module_name(file)[:-1]
    found = [
        Import(file, node.lineno, name[len("corral."):])
        for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _names(node, package)
        if name == "corral" or name.startswith("corral.")
    ]
    return sorted(found, key=lambda i: i.line)


def _names(node: ast.Import | ast.ImportFrom, package: list[str]) -> list[str]:
    """The dotted modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against this module's package
        base = ["corral", *package[:len(package) - node.level + 1]]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    if module != "corral":
        return [module]
    # ``from corral import api`` imports the package ``corral.api``
    return [f"corral.{alias.name}" if (SRC / alias.name).is_dir()
            or (SRC / f"{alias.name}.py").exists() else "corral" for alias in node.names]


def package_of(file: Path) -> str:
    parts = file.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else ""


def allowed(package: str, target: str) -> bool:
    if not target:  # ``import corral``: the version, nothing else
        return True
    head = target.split(".")[0]
    rule = RULES[package]
    if head == package or rule is ANYTHING:
        return True
    return any(target == entry or target.startswith(entry + ".") for entry in rule)


def crossings(files: list[Path], text: str | None = None) -> list[str]:
    """Every import in ``files`` its package's rule does not allow, as a message."""
    bad = []
    for file in files:
        package = package_of(file)
        for found in imports_of(file, text):
            if package == "":
                bad.append(f"{found}: the corral package itself imports nothing of Corral")
            elif not allowed(package, found.target):
                rule = ", ".join(sorted(RULES[package])) or "nothing of Corral"
                bad.append(f"{found}: {package} may import only {rule} (tests/unit/test_layers.py)")
    return bad


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_rule() -> None:
    packages = {path.name for path in SRC.iterdir()
                if path.is_dir() and (path / "__init__.py").exists()}
    missing = sorted(packages - set(RULES))
    assert not missing, f"packages without a layer rule in tests/unit/test_layers.py: {missing}"
    modules = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert not modules, f"modules outside every package (give them one): {modules}"


def test_no_import_crosses_a_layer() -> None:
    bad = crossings(_sources())
    assert not bad, "imports that cross the layer rules:\n" + "\n".join(bad)


def test_the_walker_sees_every_kind_of_import() -> None:
    """The checker itself: a crossing in any import form is found and named."""
    probe = SRC / "domain" / "_layers_probe.py"  # never written: the text is parsed as it
    text = (
        "from typing import TYPE_CHECKING\n"
        "import corral.host.run\n"
        "from corral.services import core\n"
        "from corral import api\n"
        "from ..state import store\n"
        "from . import names\n"
        "if TYPE_CHECKING:\n"
        "    from corral.drivers.base import Driver\n"
        "def late() -> None:\n"
        "    from corral.network.realise import realise\n"
    )
    found = [(i.line, i.target) for i in imports_of(probe, text)]
    assert found == [(2, "host.run"), (3, "services"), (4, "api"), (5, "state"),
                     (6, "domain"), (8, "drivers.base"), (10, "network.realise")]
    assert not allowed("domain", "host.run") and allowed("domain", "domain.names")
    assert allowed("web", "api.deps") and not allowed("web", "api.instances")
    assert allowed("daemon", "drivers.qemu") and allowed("cli", "")
    message = crossings([probe], text)[0]
    assert "domain/_layers_probe.py:2 imports corral.host.run" in message
    assert "domain may import only nothing of Corral" in message
