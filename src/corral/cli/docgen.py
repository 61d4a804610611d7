"""What is made from the CLI's own definition: the completion tree and the man pages.

* ``tree()`` -- every command, its options (which take a value, their choices) and
  arguments, with the *kind* of name an argument or option expects (instance, template,
  network, pool, snapshot, backup). Stored as ``cli/tree.json`` (package data) so that
  completion (``cli/complete.py``) reads it without importing Typer or the CLI;
  tests/unit/cli/test_docgen.py fails when the stored tree and the CLI differ.
* ``man_pages()`` -- one roff page per command group (``corral(1)`` for the top-level
  commands, ``corral-GROUP(1)`` for each group), with the README tour's lines that use the
  group as EXAMPLES. scripts/build-deb.sh makes them at package build time.

``python -m corral.cli.docgen tree`` prints the tree; ``... man [--readme FILE] DIR`` writes
the pages.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

from corral import __version__
from corral.cli.main import app
from corral.domain.instance import Kind
from corral.domain.network import NetworkType

TREE_FILE = Path(__file__).with_name("tree.json")

# Which kind of name an argument or option takes, by command path and parameter name.
# "*" matches any command of that group ("" is the top level).
_ARG_KINDS: dict[tuple[str, str], str] = {
    ("", "ref"): "instance", ("", "refs"): "instance", ("", "instance"): "instance",
    ("migrate", "args"): "instance", ("restore", "backup"): "backup",
    ("nic *", "instance"): "instance", ("bandwidth *", "instance"): "instance",
    ("disk *", "ref"): "instance",
    ("snapshot *", "name"): "instance", ("snapshot *", "snapshot"): "snapshot",
    ("template info", "name"): "template", ("template export", "name"): "template",
    ("template delete", "name"): "template", ("template build", "name"): "template",
    ("network info", "name"): "network", ("network delete", "names"): "network",
    ("storage info", "name"): "pool", ("storage delete", "name"): "pool",
    ("backup create", "name"): "instance", ("backup list", "name"): "instance",
    ("backup prune", "name"): "instance", ("backup info", "backup"): "backup",
    ("backup delete", "backup"): "backup", ("backup verify", "backups"): "backup",
    ("backup schedule set", "name"): "instance", ("backup schedule remove", "name"): "instance",
    ("owner", "user"): "user", ("backup target remove", "name"): "target",
    ("user remove", "name"): "user", ("user token", "name"): "user",
}
_OPTION_KINDS = {"template": "template", "pool": "pool", "network": "network", "owner": "user",
                 "to": "target", "target": "target"}
KINDS = ("instance", "template", "network", "pool", "snapshot", "backup", "user", "target")


def _arg_kind(path: list[str], name: str) -> str | None:
    full = " ".join(path)
    group = " ".join(path[:-1])
    for key in ((full, name), (f"{group} *" if group else "", name)):
        if key in _ARG_KINDS:
            return _ARG_KINDS[key]
    return None


# Values of plain-string options that are one of a few words.
_CHOICES: dict[tuple[str, str], list[str]] = {
    ("create", "type_"): [k.value for k in Kind], ("convert", "to"): [k.value for k in Kind],
    ("network create", "type_"): [t.value for t in NetworkType],
}


def _choices(param: Any, path: list[str]) -> list[str]:
    if (" ".join(path), param.name) in _CHOICES:
        return _CHOICES[(" ".join(path), param.name)]
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return []


def _node(cmd: Any, path: list[str]) -> dict[str, Any]:
    node: dict[str, Any] = {"help": (cmd.help or "").strip().split("\n")[0]}
    if hasattr(cmd, "commands"):
        node["commands"] = {name: _node(sub, [*path, name])
                            for name, sub in sorted(cmd.commands.items()) if not sub.hidden}
        return node
    options: dict[str, Any] = {}
    args: list[dict[str, Any]] = []
    for param in cmd.params:
        if param.param_type_name == "option":
            if getattr(param, "hidden", False):
                continue
            spec: dict[str, Any] = {"value": not param.is_flag}
            kind = _OPTION_KINDS.get(param.name or "")
            if kind and not param.is_flag:
                spec["kind"] = kind
            if _choices(param, path):
                spec["choices"] = _choices(param, path)
            for name in [*param.opts, *param.secondary_opts]:
                options[name] = spec
        elif param.param_type_name == "argument":
            arg: dict[str, Any] = {"name": param.name, "many": param.nargs == -1}
            kind = _arg_kind(path, param.name or "")
            if kind:
                arg["kind"] = kind
            if _choices(param, path):
                arg["choices"] = _choices(param, path)
            args.append(arg)
    options["--help"] = {"value": False}
    node["options"] = dict(sorted(options.items()))
    node["args"] = args
    return node


def tree() -> dict[str, Any]:
    """The completion tree of ``corral`` (see the module's docstring)."""
    root = typer.main.get_command(app)
    node = _node(root, [])
    node["options"] = {"--help": {"value": False}, "--version": {"value": False}}
    return node


# Man pages ---------------------------------------------------------------------------------

def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _usage(path: list[str], cmd: Any) -> str:
    args = [f"{(p.name or '').upper()}{'...' if p.nargs == -1 else ''}"
            for p in cmd.params if p.param_type_name == "argument"]
    return " ".join(["corral", *path, "[OPTIONS]", *args])


def _command_section(path: list[str], cmd: Any) -> list[str]:
    lines = [".TP", f".B {_roff(' '.join(['corral', *path]))}",
             _roff((cmd.help or "").strip() or "(no description)"),
             ".RS", ".PP", f"Usage: {_roff(_usage(path, cmd))}"]
    for param in cmd.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        names = ", ".join([*param.opts, *param.secondary_opts])
        metavar = "" if param.is_flag else " " + (param.metavar or param.name or "").upper()
        lines += [".TP", f".B {_roff(names)}{_roff(metavar)}", _roff(param.help or "")]
    lines.append(".RE")
    return lines


def readme_examples(readme: str) -> dict[str, list[str]]:
    """The README's command lines (in ``` blocks) by the group they use ("" = top level);
    a line with several ``corral`` commands (``a; corral b``) counts for each of them."""
    commands = tree()["commands"]
    groups = {name for name, node in commands.items() if "commands" in node}
    found: dict[str, list[str]] = {}
    in_block = False
    for line in readme.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if not in_block or not line.startswith("corral "):
            continue
        for match in re.finditer(r"(?:^|;\s*)corral\s+(\S+)", line):
            word = match.group(1)
            group = word if word in groups else ""
            lines = found.setdefault(group, [])
            if line not in lines:
                lines.append(line)
    return found


def _commands_of(group: Any, path: list[str]) -> list[str]:
    lines: list[str] = []
    for name, sub in sorted(group.commands.items()):
        if hasattr(sub, "commands"):
            lines += _commands_of(sub, [*path, name])
        else:
            lines += _command_section([*path, name], sub)
    return lines


def man_pages(readme: str = "") -> dict[str, str]:
    """File name -> roff text: ``corral.1`` and ``corral-GROUP.1`` for each group."""
    root: Any = typer.main.get_command(app)
    examples = readme_examples(readme) if readme else {}
    date = datetime.date.today().isoformat()
    groups = {n: c for n, c in sorted(root.commands.items()) if hasattr(c, "commands")}
    top = {n: c for n, c in sorted(root.commands.items()) if not hasattr(c, "commands")}
    pages: dict[str, str] = {}

    def page(name: str, title: str, summary: str, body: list[str], group: str) -> str:
        head = [f'.TH {name.upper()} 1 "{date}" "corral {__version__}" "Corral"',
                ".SH NAME", f"{_roff(name)} \\- {_roff(summary)}"]
        tail: list[str] = []
        if examples.get(group):
            tail += [".SH EXAMPLES", ".nf", *(_roff(x) for x in examples[group]), ".fi"]
        see = sorted({"corral"} | {f"corral-{g}" for g in groups} - {name})
        tail += [".SH SEE ALSO", ", ".join(f"\\fB{_roff(s)}\\fR(1)" for s in see)
                 + ", \\fBcorrald\\fR \\-\\-help"]
        return "\n".join([*head, *body, *tail]) + "\n"

    body = [".SH SYNOPSIS", ".B corral", "[\\-\\-version] COMMAND [ARGS]...",
            ".SH DESCRIPTION", _roff((root.help or "").strip()),
            "Every command talks to corrald: its Unix socket (/run/corral/corral.sock, or "
            "$CORRAL_SOCKET) as root, or $CORRAL_URL with $CORRAL_TOKEN and $CORRAL_TLS_CERT.",
            ".SH COMMANDS"]
    for name, cmd in top.items():
        body += _command_section([name], cmd)
    body += [".SH COMMAND GROUPS", *(f".TP\n.B corral {g}\n{_roff(c.help or '')} See "
                                     f"\\fBcorral\\-{g}\\fR(1)." for g, c in groups.items())]
    pages["corral.1"] = page("corral", "", (root.help or "").strip(), body, "")
    for gname, group in groups.items():
        body = [".SH SYNOPSIS", f".B corral {gname}", "COMMAND [ARGS]...",
                ".SH DESCRIPTION", _roff((group.help or "").strip()), ".SH COMMANDS"]

        body += _commands_of(group, [gname])
        pages[f"corral-{gname}.1"] = page(f"corral-{gname}", "", (group.help or gname).strip(),
                                          body, gname)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.cli.docgen")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("tree", help="print the completion tree (cli/tree.json) as JSON")
    man = sub.add_parser("man", help="write the man pages into DIR")
    man.add_argument("--readme", type=Path, help="README whose tour lines become EXAMPLES")
    man.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.what == "tree":
        print(json.dumps(tree(), indent=1, sort_keys=True))
        return 0
    readme = args.readme.read_text() if args.readme else ""
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, text in man_pages(readme).items():
        (args.directory / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
