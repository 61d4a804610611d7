"""A small etcd v3 client over etcd's gRPC gateway (JSON over HTTP, ``/v3/...``).

Why not a gRPC client: ``etcd3`` is broken with current protobuf, and ``aetcd`` would bring
grpcio and generated protobuf stubs for the handful of calls Corral makes (range, put,
delete, txn, lease grant/keep-alive/revoke, member list); the gateway is part of every etcd
since 3.3 and httpx is already Corral's HTTP client. Calls are synchronous: services run in
worker threads.

Several endpoints: a call goes to the endpoint that answered last, and on a connection
failure to the next one; when none answers, or etcd says it cannot reach agreement (no
leader, request timed out: quorum lost), ``ClusterUnavailable`` with a message that says so.

TLS: with ``tls`` (``host/pki.TLSFiles``) the client trusts only that CA and presents that
client certificate (etcd's ``--client-cert-auth``); https endpoints without it are checked
against the system's CAs and present none.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from corral.domain.errors import CorralError, HostFailure
from corral.host.pki import TLSFiles


class ClusterUnavailable(CorralError):
    """The cluster store cannot be reached or cannot agree (quorum lost): cluster-wide
    changes are refused; each host's guests and local reads go on."""

    code = "cluster_unavailable"
    status = 503


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix`` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return _b64(bytes(raw[: i + 1]))
    return _b64(b"\0")


_UNAVAILABLE_HINTS = ("request timed out", "no leader", "leader changed", "too many requests",
                      "timed out", "unavailable", "not capable")


class EtcdClient:
    def __init__(self, endpoints: list[str], timeout: float = 5.0,
                 tls: TLSFiles | None = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.tls = tls
        self._current = 0
        self._lock = threading.Lock()
        # httpx (~20 MiB with what it pulls in) loads when a cluster is joined or made, not
        # with every daemon: a lone host never builds an EtcdClient
        import httpx

        try:
            verify: Any = True if tls is None else tls.context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise HostFailure(f"cannot load the etcd TLS files ({tls and tls.cert}, "
                              f"{tls and tls.key}, CA {tls and tls.ca}): {exc}") from exc
        self._http = httpx.Client(timeout=timeout, trust_env=False, verify=verify)

    def close(self) -> None:
        self._http.close()

    # Transport ---------------------------------------------------------------------------
    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers."""
        import httpx  # loaded already (by __init__)

        failures: list[str] = []
        with self._lock:
            start = self._current
        for step in range(len(self.endpoints)):
            index = (start + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            try:
                answer = self._http.post(endpoint + path, json=body)
            except httpx.TimeoutException:
                failures.append(f"{endpoint}: no answer in time")
                continue
            except httpx.HTTPError as exc:
                failures.append(f"{endpoint}: {_describe(exc)}")
                continue
            data: dict[str, Any] = answer.json() if answer.content else {}
            if answer.status_code >= 400 or "error" in data:
                message = str(data.get("message") or data.get("error") or answer.text)
                if any(hint in message for hint in _UNAVAILABLE_HINTS):
                    failures.append(f"{endpoint}: {message}")
                    continue
                raise EtcdError(message)
            with self._lock:
                self._current = index
            return data
        raise ClusterUnavailable(
            "the cluster store (etcd) is unreachable or has lost quorum ("
            + "; ".join(failures) + "): cluster-wide changes are refused until it is back; "
            "guests and local reads on each host go on")

    # KV ----------------------------------------------------------------------------------
    def get(self, key: str, serializable: bool = False) -> KeyValue | None:
        found = self.range(key, serializable=serializable)
        return found[0] if found else None

    def range(self, key: str, prefix: bool = False,
              serializable: bool = False) -> list[KeyValue]:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        if serializable:
            body["serializable"] = True
        data = self.call("/v3/kv/range", body)
        return [_kv(item) for item in data.get("kvs", [])]

    def put(self, key: str, value: bytes | str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        self.call("/v3/kv/put", body)

    def delete(self, key: str, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        return int(self.call("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> bool:
        """One transaction; whether the comparisons held (and ``success`` ran)."""
        data = self.call("/v3/kv/txn", {"compare": compare, "success": success,
                                         "failure": failure or []})
        return bool(data.get("succeeded", False))

    # Leases ------------------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; its TTL now, 0 when it has expired (it is gone)."""
        data = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        with contextlib.suppress(EtcdError):  # already expired
            self.call("/v3/lease/revoke", {"ID": str(lease)})

    # Cluster -----------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        return list(self.call("/v3/cluster/member/list", {}).get("members", []))

    def endpoint_health(self) -> dict[str, str]:
        """Each endpoint: "ok (leader …)" or what went wrong, asked one by one."""
        import httpx  # loaded already (by __init__)

        found: dict[str, str] = {}
        for endpoint in self.endpoints:
            try:
                answer = self._http.post(endpoint + "/v3/maintenance/status", json={})
                data = answer.json()
                found[endpoint] = ("ok" if data.get("leader") and "error" not in data
                                   else str(data.get("message", "no leader")))
            except (httpx.HTTPError, ValueError) as exc:
                found[endpoint] = f"unreachable: {exc}"
        return found


def _describe(exc: Exception) -> str:
    """A transport failure; a refused TLS handshake says what to check."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is None and "SSL" not in str(exc):
        return str(exc)
    return (f"TLS handshake failed ({exc}): the endpoint must be etcd over https, its "
            "certificate signed by the given CA, and this client's certificate one that "
            "etcd's --trusted-ca-file signed")


class EtcdError(CorralError):
    """etcd refused a request for a reason other than availability."""

    code = "host_failure"
    status = 500


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(item["key"]).decode(),
        value=base64.b64decode(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        lease=int(item.get("lease", 0)),
    )


def absent(key: str) -> dict[str, Any]:
    """Comparison: ``key`` does not exist."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def unchanged(key: str, mod_revision: int) -> dict[str, Any]:
    """Comparison: ``key`` was last written at ``mod_revision`` (0: does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL",
            "mod_revision": str(mod_revision)}


def put_op(key: str, value: bytes | str, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}
