"""Shell completion without the CLI: ``corral __complete SHELL CWORD WORD...``.

The bash and zsh scripts (packaging/completion/) call this with the words of the command
line and the index of the one being completed; it prints the candidates, one a line.
Commands and options come from ``cli/tree.json`` (made from the CLI by ``cli/docgen``);
instance, template, network, pool, snapshot, backup and user names from corrald, with one
plain HTTP request over its Unix socket (or $CORRAL_URL with $CORRAL_TOKEN and
$CORRAL_TLS_CERT) and a short timeout. Only the standard library is imported -- not Typer,
Rich, httpx or the CLI (bench/completion.py times it; the budget is 100 ms).
A daemon that does not answer completes nothing rather than printing an error.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

TREE_FILE = os.path.join(os.path.dirname(__file__), "tree.json")
DEFAULT_SOCKET = "/run/corral/corral.sock"
TIMEOUT = 2.0

# kind -> (API path, field of each item); snapshots are per instance.
_SOURCES = {
    "instance": ("/api/v1/instances", "name"),
    "template": ("/api/v1/templates", "name"),
    "network": ("/api/v1/networks", "name"),
    "pool": ("/api/v1/storage/pools", "name"),
    "user": ("/api/v1/users", "name"),
    "target": ("/api/v1/backup-targets", "name"),
}


def _quote(text: str) -> str:
    """``text`` as one URL path segment or query value (percent-encoded UTF-8)."""
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(c if c in safe else "".join(f"%{b:02X}" for b in c.encode())
                   for c in text)


def _connect() -> tuple[socket.socket, str, str]:
    """A connected socket to corrald, the Host header and the URL's path prefix."""
    url = os.environ.get("CORRAL_URL")
    if not url:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(os.environ.get("CORRAL_SOCKET", DEFAULT_SOCKET))
        except OSError:
            sock.close()
            raise
        return sock, "corral", ""
    from urllib.parse import urlsplit  # remote only: the local socket needs no URL

    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname or "localhost"
    port_number = parts.port or (443 if scheme == "https" else 80)
    sock = socket.create_connection((host, port_number), timeout=TIMEOUT)
    if scheme == "https":
        import ssl  # only here: its import alone is a fifth of the budget

        cert = os.environ.get("CORRAL_TLS_CERT")
        context = ssl.create_default_context(cafile=cert)
        if cert:
            context.check_hostname = False  # corrald's self-signed certificate, pinned
        sock = context.wrap_socket(sock, server_hostname=host)
    return sock, parts.netloc, parts.path.rstrip("/")


def _get(path: str) -> Any:
    """The JSON answer of GET ``path`` from corrald, or None (no daemon, refused, error).
    HTTP/1.0 on a plain socket: http.client's import costs more than this whole request."""
    token = os.environ.get("CORRAL_TOKEN")
    try:
        sock, host, prefix = _connect()
    except (OSError, ValueError):
        return None
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        sock.sendall(f"GET {prefix}{path} HTTP/1.0\r\nHost: {host}\r\n{auth}"
                     "Accept: application/json\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            return None
        return json.loads(body)
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def names(kind: str, instance: str | None = None, target: str | None = None) -> list[str]:
    """The names of ``kind`` corrald knows (snapshots: of ``instance``; backups: in the
    backup ``target``, which the command line must name with ``--to``)."""
    if kind == "backup":
        if not target:
            return []
        data = _get(f"/api/v1/backups?target={_quote(target)}")
        items = data if isinstance(data, list) else []
        return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]
    if kind == "snapshot":
        if not instance:
            return []
        data = _get(f"/api/v1/instances/{_quote(instance)}/snapshots")
        items = data.get("snapshots", []) if isinstance(data, dict) else []
        return [str(item["name"]) for item in items if isinstance(item, dict)]
    if kind not in _SOURCES:
        return []
    path, field = _SOURCES[kind]
    data = _get(path)
    if not isinstance(data, list):
        return []
    return [str(item[field]) for item in data if isinstance(item, dict) and field in item]


def _values(spec: dict[str, Any], instance: str | None, target: str | None) -> list[str]:
    if "choices" in spec:
        return list(spec["choices"])
    if "kind" in spec:
        return names(spec["kind"], instance, target)
    return []


def candidates(tree: dict[str, Any], words: list[str], cword: int) -> list[str]:
    """What may stand at ``words[cword]`` (``words[0]`` is ``corral``), filtered by the
    prefix typed so far. bash splits ``--opt=value`` into ``--opt``, ``=``, ``value``."""
    if cword < 1:
        return []
    words = [*words, *[""] * (cword + 1 - len(words))]
    current = words[cword]
    node = tree
    positionals: list[str] = []
    given: dict[str, str] = {}  # option values on the line (``--to``: the backup target)
    pending: dict[str, Any] | None = None  # the option whose value comes next
    pending_name = ""
    i = 1
    while i < cword:
        word = words[i]
        if pending is not None:
            if word != "=":
                given[pending_name] = word
                pending = None
        elif word.startswith("-") and word != "-":
            name, eq, value = word.partition("=")
            spec = node.get("options", {}).get(name)
            if spec and spec["value"] and not eq:
                pending, pending_name = spec, name
            elif eq:
                given[name] = value
        elif "commands" in node and word in node["commands"]:
            node = node["commands"][word]
        else:
            positionals.append(word)
        i += 1
    instance = next((p for p, a in zip(positionals, node.get("args", []), strict=False)
                     if a.get("kind") == "instance"), None)
    target = given.get("--to") or given.get("--target")

    def values(spec: dict[str, Any]) -> list[str]:
        return _values(spec, instance, target)

    if current == "=" and pending is not None:
        return values(pending)
    if current.startswith("-") and "=" in current:
        name, _, prefix = current.partition("=")
        spec = node.get("options", {}).get(name)
        if spec and spec["value"]:
            return [f"{name}={v}" for v in values(spec) if v.startswith(prefix)]
        return []
    if pending is not None:
        found = values(pending)
    elif current.startswith("-"):
        found = list(node.get("options", {}))
    elif "commands" in node:
        found = list(node["commands"])
    else:
        args: list[dict[str, Any]] = node.get("args", [])
        if not args:
            return []
        arg = args[len(positionals)] if len(positionals) < len(args) else args[-1]
        if len(positionals) >= len(args) and not arg["many"]:
            return []
        found = [v for v in values(arg) if arg["many"] is False or v not in positionals]
    return [v for v in found if v.startswith(current)]


def main(argv: list[str]) -> int:
    """``argv``: SHELL CWORD WORD... (the words of the command line, ``corral`` first)."""
    if len(argv) < 2 or not argv[1].isdigit():
        print("usage: corral __complete bash|zsh CWORD WORD...", file=sys.stderr)
        return 2
    with open(TREE_FILE, encoding="utf-8") as file:
        tree = json.load(file)
    for line in candidates(tree, argv[2:], int(argv[1])):
        print(line)
    return 0
