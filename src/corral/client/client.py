"""CorralClient: one method per API call, wire models in and out."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from corral.client.storage import StorageCalls
from corral.client.transport import ApiError as ApiError
from corral.client.transport import HttpTransport, raise_for
from corral.client.unixhttp import UnixHttp, Unreachable
from corral.wire.bulk import BulkRequestModel, ChangeLabelsRequest, LabelsModel
from corral.wire.capacity import CapacityCaseModel
from corral.wire.history import HistoryModel
from corral.wire.models import (
    AddNicRequest,
    BandwidthModel,
    CreateNetworkRequest,
    CreateRequest,
    Event,
    ExecRequest,
    ExecResponse,
    HostInfo,
    InstanceModel,
    NetworkModel,
    NicModel,
    OperationLogLineModel,
    OperationModel,
    PolicyModel,
    SetBandwidthRequest,
    SetPolicyRequest,
    SetResourcesRequest,
    SetResourcesResponse,
    StatsModel,
    StopRequest,
    TemplateModel,
    TrafficClassModel,
    TrafficModel,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_SOCKET = "/run/corral/corral.sock"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ExecOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


def _verify(tls_cert: str | None) -> Any:
    """A corrald's self-signed certificate is pinned: ``tls_cert`` or $CORRAL_TLS_CERT names
    its PEM file (``/var/lib/corral/tls/cert.pem`` on that host)."""
    path = tls_cert or os.environ.get("CORRAL_TLS_CERT")
    if not path:
        return True
    from pathlib import Path

    from corral.client.tls import pinned_context

    try:
        pem = Path(path).read_text()
    except OSError as exc:
        raise ApiError(0, "invalid", f"cannot read corrald's TLS certificate '{path}' "
                       f"($CORRAL_TLS_CERT): {exc.strerror or exc}") from None
    return pinned_context(pem)


_PLAIN = frozenset({"json", "params", "timeout"})


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    """Query values as httpx writes them (booleans as true/false, None as empty)."""
    if not params:
        return None
    return {k: ("true" if v else "false") if isinstance(v, bool) else "" if v is None else str(v)
            for k, v in params.items()}


class CorralClient(StorageCalls):
    def __init__(
        self, socket: str | None = None, url: str | None = None, token: str | None = None,
        timeout: float = 120.0, tls_cert: str | None = None,
    ) -> None:
        url = url or os.environ.get("CORRAL_URL")
        token = token or os.environ.get("CORRAL_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._unix: UnixHttp | None = None
        if url:
            self.socket: str | None = None
            self.base_url = url.rstrip("/")
            self._transport = HttpTransport(self.base_url, headers=headers, timeout=timeout,
                                            verify=_verify(tls_cert))
        else:
            self.socket = socket or os.environ.get("CORRAL_SOCKET", DEFAULT_SOCKET)
            self.base_url = "http://corral"
            self._unix = UnixHttp(self.socket, headers)
            self._transport = HttpTransport(self.base_url, headers=headers, timeout=timeout,
                                            uds=self.socket)
        self._timeout = timeout
        self.has_token = bool(token)
        """Requests carry a bearer token (over the socket too: they run as its identity)."""

    @property
    def _http(self) -> httpx.Client:
        """The httpx client (client/transport.py), made on first use."""
        return self._transport.client

    def close(self) -> None:
        self._transport.close()
        if self._unix is not None:
            self._unix.close()

    def __enter__(self) -> CorralClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Plumbing -------------------------------------------------------------------------
    def _exchange(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        """Status and body of one request: a plain JSON request on the local socket goes
        through ``unixhttp`` (lighter by far), anything else through httpx."""
        try:
            if self._unix is not None and kwargs.keys() <= _PLAIN:
                return self._unix.request(
                    method, path, params=_query(kwargs.get("params")),
                    json_body=kwargs.get("json"), timeout=kwargs.get("timeout", self._timeout))
            return self._transport.exchange(method, path, **kwargs)
        except Unreachable as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> ApiError:
        where = self.socket or self.base_url
        return ApiError(0, "unreachable", f"cannot reach corrald at {where}: is it running? "
                                          f"({exc})")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        status, data = self._exchange(method, path, **kwargs)
        raise_for(status, data)
        return json.loads(data)

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._request(method, path, **kwargs))

    def _models(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(  # type: ignore[valid-type]
            self._request(method, path, **kwargs)
        )

    # Instances ------------------------------------------------------------------------
    def list_instances(self, node: str | None = None,
                       selector: str | None = None) -> list[InstanceModel]:
        """Every instance of every cluster member (``node``: of that member only;
        ``selector``: those whose labels match, e.g. ``role=web``)."""
        params = {} if node is None else {"node": node}
        if selector is not None:
            params["selector"] = selector
        return self._models(InstanceModel, "GET", "/api/v1/instances", params=params)

    def labels(self, ref: str) -> dict[str, str]:
        return LabelsModel.model_validate(
            self._request("GET", f"/api/v1/instances/{ref}/labels")).labels

    def change_labels(self, ref: str, set_: dict[str, str] | None = None,
                      unset: list[str] | None = None) -> dict[str, str]:
        body = ChangeLabelsRequest(set=set_ or {}, unset=unset or []).model_dump()
        return self._model(LabelsModel, "PATCH", f"/api/v1/instances/{ref}/labels",
                           json=body).labels

    def bulk(self, request: BulkRequestModel) -> OperationModel:
        """Start one action on many instances; the parent operation (its items:
        ``children``)."""
        return self._model(OperationModel, "POST", "/api/v1/bulk",
                           json=request.model_dump(mode="json"))

    def children(self, op_id: str) -> list[OperationModel]:
        return self._models(OperationModel, "GET", f"/api/v1/operations/{op_id}/children")

    def get_instance(self, ref: str) -> InstanceModel:
        return self._model(InstanceModel, "GET", f"/api/v1/instances/{ref}")

    def create_instance(self, request: CreateRequest) -> OperationModel:
        return self._model(
            OperationModel, "POST", "/api/v1/instances", json=request.model_dump()
        )

    def delete_instance(self, ref: str, force: bool = False) -> OperationModel:
        return self._model(
            OperationModel, "DELETE", f"/api/v1/instances/{ref}", params={"force": force}
        )

    def action(
        self, ref: str, action: str, stop: StopRequest | None = None, wait: float = 0
    ) -> OperationModel:
        """Start an instance action; ``wait`` > 0 holds the answer up to that many seconds
        until the operation ends (its status tells whether it did)."""
        body = stop.model_dump() if stop is not None else None
        path = f"/api/v1/instances/{ref}/{action}"
        if wait <= 0:
            return self._model(OperationModel, "POST", path, json=body)
        return self._model(OperationModel, "POST", path, json=body, params={"wait": wait},
                           timeout=wait + 30)

    def run(
        self, ref: str, argv: list[str], stdin: bytes = b"", timeout: float | None = None
    ) -> ExecOutcome:
        """Run ``argv`` inside the instance; ``timeout`` in seconds, None for no limit."""
        request = ExecRequest(
            argv=argv, stdin_b64=base64.b64encode(stdin).decode(), timeout=timeout
        )
        response = self._model(
            ExecResponse, "POST", f"/api/v1/instances/{ref}/exec", json=request.model_dump(),
            timeout=None if timeout is None else timeout + 30,
        )
        return ExecOutcome(
            response.exit_code, base64.b64decode(response.stdout_b64),
            base64.b64decode(response.stderr_b64), response.timed_out,
        )

    def exec(
        self, ref: str, argv: list[str], stdin: bytes = b"", timeout: float | None = 60.0
    ) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of ``argv`` run inside the instance."""
        done = self.run(ref, argv, stdin, timeout)
        return done.exit_code, done.stdout, done.stderr

    def console_log(self, ref: str, limit: int = 65536) -> bytes:
        body = self._request(
            "GET", f"/api/v1/instances/{ref}/console/log", params={"limit": limit}
        )
        return base64.b64decode(body["log_b64"])

    # Operations -----------------------------------------------------------------------
    def list_operations(self, limit: int = 100) -> list[OperationModel]:
        return self._models(OperationModel, "GET", "/api/v1/operations", params={"limit": limit})

    def get_operation(self, op_id: str) -> OperationModel:
        return self._model(OperationModel, "GET", f"/api/v1/operations/{op_id}")

    def operation_log(self, op_id: str) -> list[OperationLogLineModel]:
        return self._models(OperationLogLineModel, "GET", f"/api/v1/operations/{op_id}/log")

    def cancel_operation(self, op_id: str) -> OperationModel:
        return self._model(OperationModel, "DELETE", f"/api/v1/operations/{op_id}")

    def wait(
        self, op_id: str, timeout: float | None = None,
        on_progress: Callable[[OperationModel], None] | None = None,
    ) -> OperationModel:
        """Block until the operation ends (or ``timeout``), reporting progress as it comes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if on_progress else 30.0
            if deadline is not None:
                step = max(0.0, min(step, deadline - time.monotonic()))
            op = self._model(
                OperationModel, "GET", f"/api/v1/operations/{op_id}/wait",
                params={"timeout": step}, timeout=step + 30,
            )
            if on_progress is not None:
                on_progress(op)
            if op.status.final or (deadline is not None and time.monotonic() >= deadline):
                return op

    # Host and templates ---------------------------------------------------------------
    def host_info(self) -> HostInfo:
        return self._model(HostInfo, "GET", "/api/v1/host")

    def list_templates(self) -> list[TemplateModel]:
        return self._models(TemplateModel, "GET", "/api/v1/templates")

    def get_template(self, name: str) -> TemplateModel:
        return self._model(TemplateModel, "GET", f"/api/v1/templates/{name}")

    def build_template(self, name: str, if_outdated: bool = False) -> OperationModel:
        return self._model(OperationModel, "POST", "/api/v1/templates/build",
                           json={"name": name, "if_outdated": if_outdated})

    # Streams --------------------------------------------------------------------------
    def _ws_connect(self, path: str) -> Any:
        from websockets.sync.client import connect, unix_connect

        if self.socket is not None:
            return unix_connect(self.socket, uri=f"ws://corral{path}", max_size=None)
        ws_url = self.base_url.replace("http", "ws", 1) + path
        tls = self._transport.verify
        pinned = {"ssl": tls} if ws_url.startswith("wss:") and tls is not True else {}
        return connect(ws_url, additional_headers=self._transport.headers, max_size=None,
                       **pinned)

    def events(self) -> Iterator[Event]:
        """The daemon's events; ApiError when it refuses the stream (owners: 403)."""
        from websockets.exceptions import ConnectionClosedError

        with self._ws_connect("/events") as ws:
            try:
                for message in ws:
                    yield Event.model_validate_json(message)
            except ConnectionClosedError as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 0
                if 4000 <= code < 5000:  # corrald's refusal: 4000 + the HTTP status
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    raise ApiError(code - 4000, "refused", reason) from None
                raise

    def console(self, ref: str) -> Any:
        """A websocket carrying the console's bytes both ways (binary frames)."""
        return self._ws_connect(f"/api/v1/instances/{ref}/console")


    # Networks, NICs, traffic classes, bandwidth, traffic (issue 5) -----------------------
    def list_networks(self) -> list[NetworkModel]:
        return self._models(NetworkModel, "GET", "/api/v1/networks")

    def create_network(self, request: CreateNetworkRequest) -> NetworkModel:
        return self._model(NetworkModel, "POST", "/api/v1/networks", json=request.model_dump())

    def get_network(self, ref: str) -> NetworkModel:
        return self._model(NetworkModel, "GET", f"/api/v1/networks/{ref}")

    def delete_network(self, ref: str) -> None:
        self._request_empty("DELETE", f"/api/v1/networks/{ref}")

    def list_nics(self, ref: str | None = None) -> list[NicModel]:
        path = "/api/v1/nics" if ref is None else f"/api/v1/instances/{ref}/nics"
        return self._models(NicModel, "GET", path)

    def add_nic(self, ref: str, request: AddNicRequest) -> NicModel:
        return self._model(NicModel, "POST", f"/api/v1/instances/{ref}/nics",
                           json=request.model_dump())

    def remove_nic(self, ref: str, index: int) -> None:
        self._request_empty("DELETE", f"/api/v1/instances/{ref}/nics/{index}")

    def list_traffic_classes(self) -> list[TrafficClassModel]:
        return self._models(TrafficClassModel, "GET", "/api/v1/traffic-classes")

    def set_traffic_class(self, name: str, ranges: list[str]) -> TrafficClassModel:
        return self._model(TrafficClassModel, "PUT", f"/api/v1/traffic-classes/{name}",
                           json={"name": name, "ranges": ranges})

    def delete_traffic_class(self, name: str) -> None:
        self._request_empty("DELETE", f"/api/v1/traffic-classes/{name}")

    def list_bandwidth(self, ref: str | None = None) -> list[BandwidthModel]:
        params = {"instance": ref} if ref else {}
        return self._models(BandwidthModel, "GET", "/api/v1/bandwidth", params=params)

    def set_bandwidth(self, ref: str, request: SetBandwidthRequest) -> None:
        self._request_empty("PUT", f"/api/v1/instances/{ref}/bandwidth",
                            json=request.model_dump())

    def clear_bandwidth(self, ref: str, traffic_class: str | None = None) -> None:
        params = {"traffic_class": traffic_class} if traffic_class else {}
        self._request_empty("DELETE", f"/api/v1/instances/{ref}/bandwidth", params=params)

    def traffic(self, ref: str | None = None) -> list[TrafficModel]:
        params = {"instance": ref} if ref else {}
        return self._models(TrafficModel, "GET", "/api/v1/traffic", params=params)

    def metrics(self) -> str:
        return str(self._http.get("/metrics").text)

    def _request_empty(self, method: str, path: str, **kwargs: Any) -> None:
        """``_request`` for calls that answer 204 No Content."""
        raise_for(*self._exchange(method, path, **kwargs))

    # Resources, usage, capacity (issue 4) ------------------------------------------------
    def set_resources(self, ref: str, settings: dict[str, str]) -> SetResourcesResponse:
        body = SetResourcesRequest(settings=settings).model_dump()
        return self._model(SetResourcesResponse, "PATCH", f"/api/v1/instances/{ref}/resources",
                           json=body)

    def stats(self, ref: str) -> StatsModel:
        return self._model(StatsModel, "GET", f"/api/v1/instances/{ref}/stats")

    def history(self, ref: str | None, span: str = "hour") -> HistoryModel:
        """An instance's graphs' samples (``ref`` None: the host's) over ``span``: hour,
        day or month."""
        path = "/api/v1/host/history" if ref is None else f"/api/v1/instances/{ref}/history"
        return self._model(HistoryModel, "GET", path, params={"range": span})

    def all_stats(self) -> list[StatsModel]:
        return self._models(StatsModel, "GET", "/api/v1/stats")

    def policy(self) -> PolicyModel:
        return self._model(PolicyModel, "GET", "/api/v1/host/policy")

    def set_policy(self, settings: dict[str, str]) -> PolicyModel:
        body = SetPolicyRequest(settings=settings).model_dump()
        return self._model(PolicyModel, "PUT", "/api/v1/host/policy", json=body)

    def capacity(self, **params: str | float | int | bool | None) -> CapacityCaseModel:
        """The hosting business case (``GET /api/v1/capacity``; the query's names); a None
        leaves that input to the daemon (this host's own figure, the seed's cost)."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._model(CapacityCaseModel, "GET", "/api/v1/capacity", params=query)
