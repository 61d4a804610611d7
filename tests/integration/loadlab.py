"""Concurrent API clients against one corrald (fake driver): the load run of bench/load.py and
of its bounded form in the suite.

Each client owns a share of the instances for its writes (start, stop, create, delete: no
client races another for a lock, so a 409 is a finding, not noise) and reads anywhere. Every
answer is recorded by route; at the end every operation a write was answered with must exist
exactly once and have ended, and the instances must be exactly what the writes made them.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "http://corral/api/v1"


def _http(socket: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=socket), timeout=60)


def seed(socket: str, count: int, prefix: str = "ld") -> list[str]:
    """``count`` stopped instances (template ``tiny``), made 8 at a time."""
    names = [f"{prefix}{i}" for i in range(count)]
    with _http(socket) as http:  # fake guests on a 2-CPU host: no over-commitment limit
        http.put(f"{API}/host/policy", json={"settings": {
            "cpu": "none", "memory": "none", "disk": "none"}}).raise_for_status()

    def make(chunk: list[str]) -> None:
        with _http(socket) as http:
            for name in chunk:
                op = http.post(f"{API}/instances",
                               json={"name": name, "type": "ct", "template": "tiny"})
                if op.status_code != 202:
                    raise RuntimeError(f"create {name}: {op.status_code} {op.text}")
                http.get(f"{API}/operations/{op.json()['id']}/wait",
                         params={"timeout": 60}).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, [names[i::8] for i in range(8)]))
    return names


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    operations: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, status: int, seconds: float, body: str = "") -> None:
        with self.guard:
            self.latencies[route].append(seconds)
            self.statuses[route][status] += 1
            if status >= 500 or status in (409, 422):
                self.errors.append(f"{route}: {status} {body[:200]}")

    def table(self) -> str:
        lines = ["| route | requests | p50 ms | p99 ms | statuses |", "|---|---:|---:|---:|---|"]
        for route in sorted(self.latencies):
            values = sorted(self.latencies[route])
            p50 = statistics.median(values) * 1000
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
            codes = ", ".join(f"{c}x{n}" for c, n in sorted(self.statuses[route].items()))
            lines.append(f"| {route} | {len(values)} | {p50:.1f} | {p99:.1f} | {codes} |")
        return "\n".join(lines)

    @property
    def server_errors(self) -> int:
        return sum(n for codes in self.statuses.values() for c, n in codes.items() if c >= 500)


def _client(socket: str, number: int, mine: list[str], everyone: list[str], until: float,
            result: Result) -> None:
    rng = random.Random(number)
    running: set[str] = set()
    made = 0
    with _http(socket) as http:
        def call(route: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
            began = time.monotonic()
            answer = http.request(method, url, **kwargs)
            result.record(route, answer.status_code, time.monotonic() - began, answer.text)
            return answer

        def wrote(answer: httpx.Response) -> None:
            if answer.status_code == 202 or (answer.status_code == 200
                                             and "status" in answer.json()):
                with result.guard:
                    result.operations.append(answer.json()["id"])

        def start_or_stop() -> None:
            name = rng.choice(mine)
            verb = "stop" if name in running else "start"
            answer = call(f"POST /instances/{{ref}}/{verb}", "POST",
                          f"{API}/instances/{name}/{verb}", params={"wait": 30})
            wrote(answer)
            if answer.is_success:
                (running.discard if verb == "stop" else running.add)(name)

        def create_delete() -> None:
            nonlocal made
            name = f"c{number}x{made}"
            made += 1
            answer = call("POST /instances", "POST", f"{API}/instances",
                          json={"name": name, "type": "ct", "template": "tiny"})
            wrote(answer)
            if not answer.is_success:
                return
            call("GET /operations/{id}/wait", "GET",
                 f"{API}/operations/{answer.json()['id']}/wait", params={"timeout": 30})
            with result.guard:
                result.created.add(name)
            if rng.random() < 0.7:
                answer = call("DELETE /instances/{ref}", "DELETE", f"{API}/instances/{name}")
                wrote(answer)
                if answer.is_success:
                    call("GET /operations/{id}/wait", "GET",
                         f"{API}/operations/{answer.json()['id']}/wait", params={"timeout": 30})
                    with result.guard:
                        result.deleted.add(name)

        reads: list[tuple[float, Callable[[], object]]] = [
            (0.05, lambda: call("GET /instances", "GET", f"{API}/instances")),
            (0.35, lambda: call("GET /instances/{ref}", "GET",
                                f"{API}/instances/{rng.choice(everyone)}")),
            (0.10, lambda: call("GET /operations", "GET", f"{API}/operations",
                                params={"limit": 20})),
            (0.05, lambda: call("GET /host", "GET", f"{API}/host")),
            (0.30, start_or_stop),
            (0.15, create_delete),
        ]
        weights = [w for w, _ in reads]
        while time.monotonic() < until:
            rng.choices(reads, weights)[0][1]()


def run(socket: str, names: list[str], clients: int, seconds: float) -> Result:
    """``clients`` threads for ``seconds``, then the bookkeeping checks into ``errors``."""
    result = Result()
    until = time.monotonic() + seconds
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(_client, socket, n, names[n::clients], names, until, result)
                   for n in range(clients)]
        for future in futures:
            future.result()
    with _http(socket) as http:
        ids = result.operations
        if len(set(ids)) != len(ids):
            result.errors.append(f"{len(ids) - len(set(ids))} operation ids answered twice")
        listed = http.get(f"{API}/operations", params={"limit": 1000}).json()
        known = {op["id"]: op for op in listed}
        for op_id in ids:
            op = known.get(op_id) or http.get(f"{API}/operations/{op_id}").json()
            if op.get("status") not in ("success", "failure", "cancelled"):
                result.errors.append(f"operation {op_id} lost or unfinished: {op}")
        present = {i["name"] for i in http.get(f"{API}/instances").json()}
        for name in result.created - result.deleted:
            if name not in present:
                result.errors.append(f"instance {name} created but missing")
        for name in result.deleted:
            if name in present:
                result.errors.append(f"instance {name} deleted but present")
        missing = set(names) - present
        if missing:
            result.errors.append(f"seeded instances missing: {sorted(missing)[:5]}")
    return result
