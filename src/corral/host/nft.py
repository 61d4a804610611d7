"""Applying nftables scripts atomically and reading Corral's counters back."""

from __future__ import annotations

import json
from typing import Any

from corral.domain.errors import HostFailure
from corral.host.net import NetHost
from corral.host.run import require_tool


def apply(host: NetHost, script: str) -> None:
    """Run ``script`` with ``nft -f -``: one transaction, all or nothing."""
    nft = require_tool("nft", "nftables")
    try:
        host.run([nft, "-f", "-"], input=script.encode())
    except HostFailure as exc:
        raise HostFailure(f"nftables refused Corral's ruleset: {exc.message}") from None


def table_exists(host: NetHost, family: str, table: str) -> bool:
    nft = require_tool("nft", "nftables")
    return "table" in host.run([nft, "list", "table", family, table], check=False)


def counters(host: NetHost, family: str, table: str) -> dict[str, tuple[int, int]]:
    """Named counters of one table: name -> (packets, bytes); empty if the table is absent."""
    nft = require_tool("nft", "nftables")
    text = host.run([nft, "-j", "list", "counters", "table", family, table], check=False)
    if not text.strip():
        return {}
    data: dict[str, Any] = json.loads(text)
    found: dict[str, tuple[int, int]] = {}
    for item in data.get("nftables", []):
        counter = item.get("counter")
        if counter and counter.get("table") == table:
            found[counter["name"]] = (int(counter["packets"]), int(counter["bytes"]))
    return found


def listing(host: NetHost, family: str, table: str) -> str:
    nft = require_tool("nft", "nftables")
    return host.run([nft, "list", "table", family, table], check=False)
