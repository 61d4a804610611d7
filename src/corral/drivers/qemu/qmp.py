"""A small synchronous wrapper over ``qemu.qmp`` (asyncio), one private event loop per call."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import QMPClient

from corral.domain.errors import HostFailure

T = TypeVar("T")


async def _execute(
    path: Path, commands: list[tuple[str, dict[str, Any] | None]], timeout: float
) -> list[Any]:
    client = QMPClient("corral")
    try:
        await asyncio.wait_for(client.connect(str(path)), timeout)
        results = []
        for command, arguments in commands:
            results.append(await asyncio.wait_for(client.execute(command, arguments), timeout))
        return results
    finally:
        await client.disconnect()


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run, also from a thread that already runs an event loop (then in a worker)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def qmp(
    path: Path, command: str, arguments: dict[str, Any] | None = None, timeout: float = 5.0
) -> Any:
    """Run one QMP command on the monitor socket at ``path``; HostFailure on any failure."""
    return qmp_many(path, [(command, arguments)], timeout)[0]


def qmp_many(
    path: Path, commands: list[tuple[str, dict[str, Any] | None]], timeout: float = 5.0
) -> list[Any]:
    try:
        return _run_coroutine(lambda: _execute(path, commands, timeout))
    except (TimeoutError, OSError, EOFError) as exc:
        raise HostFailure(f"QMP at '{path}' unreachable: {exc or type(exc).__name__}") from exc
    except Exception as exc:  # qemu.qmp raises its own hierarchy (ExecuteError, ConnectError…)
        raise HostFailure(f"QMP {commands[0][0]} failed: {exc}") from exc
