"""Property-based fuzzing of the served OpenAPI (schemathesis) against a real corrald.

The daemon (fake driver) runs in a network namespace this module makes, so the bridges and
nft tables a fuzzed ``POST /networks`` may create stay there; requests go over its Unix
socket (local root: an administrator reaches every route). Every operation is fuzzed but:

* ``exec`` and the console/VNC websockets (the fake driver's exec runs on the host);
* the three that write to host paths the request names or build real templates:
  ``POST /storage/pools`` (a pool directory or loop file anywhere), ``POST
  /backup-targets`` (a directory anywhere), ``POST /templates/build`` (debootstrap);
  ``POST /templates/import`` takes a raw file (tests/unit/templates cover hostile ones).

Half of the cases keep the generated path parameters (mostly "no such thing": 404), half
name things that exist (``fz1``, its snapshot ``s1``, the network ``fznet``, the user
``fzuser``), so the handlers behind the 404 are fuzzed too. Each answer must be below 500,
and every 4xx must be Corral's ``{"error": code, "message": text}``.

``CORRAL_FUZZ_EXAMPLES`` sets the examples per operation (default 15: about 25 s on an idle
2-core host, minutes under load); ``bench/fuzz.py`` runs the long form.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import hypothesis.strategies
import pytest
import schemathesis
from schemathesis import GenerationMode

from tests.integration.conftest import (
    Daemon,
    start_daemon,
    stop_daemon,
    write_fake_template,
)

EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "15"))
EXCLUDED_PATHS = r"(/exec|/console|/vnc|/templates/build|/templates/import)$"
EXCLUDED_POSTS = ("/api/v1/storage/pools", "/api/v1/backup-targets")
KNOWN = {"ref": "fz1", "name": "s1", "instance": "fz1", "index": 0}
KNOWN_BY_PATH = {"/api/v1/networks/{ref}": {"ref": "fznet"},
                 "/api/v1/users/{name}": {"name": "fzuser"},
                 "/api/v1/users/{name}/token": {"name": "fzuser"},
                 "/api/v1/instances/{ref}/disks/{name}": {"name": "d1"},
                 "/api/v1/instances/{ref}/disks/{name}/resize": {"name": "d1"}}

TALLY: collections.Counter[str] = collections.Counter()
"""Answers by status class, printed at the end (bench/fuzz.py reads it)."""


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    netns = f"hostile-fz-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    state = tmp_path_factory.mktemp("fuzz")
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        write_fake_template(state / "templates")
        daemon = start_daemon(state, prefix=("ip", "netns", "exec", netns))
        try:
            _seed(daemon)
            yield daemon
        finally:
            stop_daemon(daemon)
            print(f"\nfuzz answers: {dict(sorted(TALLY.items()))} "
                  f"({sum(TALLY.values())} requests, {EXAMPLES} examples per operation)")
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def _seed(daemon: Daemon) -> None:
    for args in (("create", "fz1", "--type", "container", "--template", "tiny"),
                 ("snapshot", "create", "fz1", "s1"),
                 ("disk", "add", "fz1", "d1", "--size", "64M"),
                 ("network", "create", "fznet", "--subnet", "10.77.0.0/24"),
                 ("user", "add", "fzuser")):
        proc = daemon.cli(*args)
        assert proc.returncode == 0, f"corral {' '.join(args)}: {proc.stderr}"


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_daemon: Daemon) -> Any:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(fuzz_daemon.socket)),
                      base_url="http://corral") as client:
        document = client.get("/openapi.json").json()
    schema: Any = schemathesis.openapi.from_dict(document)
    schema = schema.exclude(path_regex=EXCLUDED_PATHS)
    for path in EXCLUDED_POSTS:
        schema = schema.exclude(method="POST", path=path)
    return schema


def _request(case: Any) -> httpx.Request:
    """The case as an httpx request; every other case names things that exist."""
    kwargs = case.as_transport_kwargs(base_url="http://corral")
    seed = json.dumps([case.path_parameters, case.query, repr(case.body)], sort_keys=True,
                      default=str)
    if case.path_parameters and sum(seed.encode()) % 2 == 0:
        known = {**KNOWN, **KNOWN_BY_PATH.get(case.path, {})}
        case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
        kwargs = case.as_transport_kwargs(base_url="http://corral")
    request = httpx.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                            headers=kwargs.get("headers"), content=_content(kwargs))
    if request.method != "GET" and "content-type" not in request.headers:
        request.headers["content-type"] = "application/json"
    return request


def _content(kwargs: dict[str, Any]) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content")
    if isinstance(data, str):
        return data.encode()
    return data if isinstance(data, bytes) else None


def _judge(request: httpx.Request, response: httpx.Response) -> str | None:
    """What is wrong with the answer (None: nothing)."""
    TALLY[f"{response.status_code // 100}xx"] += 1
    where = f"{request.method} {request.url.path}?{request.url.query.decode()}"
    if response.status_code >= 500:
        return f"{where}: {response.status_code} {response.text[:300]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{where}: {response.status_code} not JSON: {response.text[:200]}"
        if not (isinstance(body, dict) and set(body) == {"error", "message"}
                and isinstance(body["error"], str) and isinstance(body["message"], str)
                and body["message"]):
            return f"{where}: {response.status_code} not {{error, message}}: {body!r:.300}"
    return None


def _fuzz(operation: Any, socket_path: str, failures: list[str]) -> None:
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # an operation with nothing to make invalid
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    client = httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=30)

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                         database=None)
    @hypothesis.given(case=hypothesis.strategies.one_of(strategies))
    def run(case: Any) -> None:
        request = _request(case)
        try:
            response = client.send(request)
        except httpx.TransportError:
            # uvicorn drops a request it cannot parse as HTTP (a header value h11 refuses)
            # before Corral sees it: counted, not Corral's answer to judge
            TALLY["dropped by the HTTP parser"] += 1
            return
        problem = _judge(request, response)
        if problem is not None and len(failures) < 200:
            print(f"\nFUZZ FAILURE {problem}", flush=True)  # seen at once with -s
            failures.append(problem)

    try:
        run()
    finally:
        client.close()


def test_no_server_error_and_every_refusal_in_corrals_form(
    fuzz_daemon: Daemon, fuzz_schema: Any
) -> None:
    failures: list[str] = []
    operations = 0
    for result in fuzz_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Unsatisfiable: nothing to generate; Flaky…: schemathesis's strategy for this
        # operation changed between cases (its feedback), the cases sent so far stand
        with contextlib.suppress(hypothesis.errors.Unsatisfiable,
                                 hypothesis.errors.FlakyStrategyDefinition):
            _fuzz(operation, str(fuzz_daemon.socket), failures)
    print(f"\nfuzzed {operations} operations")
    assert operations > 60
    assert not failures, "\n".join(dict.fromkeys(failures))
