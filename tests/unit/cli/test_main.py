"""The command tree: every command says what it does in --help."""

from __future__ import annotations

from typing import Any

import typer.main

from corral.cli.main import app


def _leaves(command: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The commands under ``command`` without help text."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        return [leaf for name, sub in subcommands.items()
                for leaf in _leaves(sub, (*path, name))]
    return [] if (command.help or "").strip() else [path]


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    assert len(getattr(root, "commands", {})) > 30
    assert _leaves(root, ()) == []
