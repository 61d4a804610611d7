"""The `corral` command: Typer + Rich over the client SDK (and nothing else)."""
