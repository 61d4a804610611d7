"""The ``corral`` executable: shell completion (``corral __complete ...``) answers from a
module of the standard library alone (cli/complete.py); everything else is the Typer CLI."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "__complete":
        from corral.cli.complete import main as complete

        sys.exit(complete(sys.argv[2:]))
    from corral.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
