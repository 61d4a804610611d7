"""The bounded load run (bench/load.py runs 50 clients x 60 s against 1000 instances): 10
concurrent API clients for 5 s against 100 instances of the fake driver, reads and writes
mixed: no server error, no lost or duplicated operation, instances as the writes left them."""

from __future__ import annotations

from tests.integration.conftest import Daemon
from tests.integration.loadlab import run, seed


def test_ten_clients_against_a_hundred_instances(daemon: Daemon) -> None:
    names = seed(str(daemon.socket), 100)
    result = run(str(daemon.socket), names, clients=10, seconds=5)
    print(result.table())
    assert result.server_errors == 0, result.errors
    assert result.errors == []
    assert sum(len(v) for v in result.latencies.values()) > 100
    assert result.operations, "no write was answered with an operation"
