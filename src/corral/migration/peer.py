"""The client one corrald uses to drive another: TLS pinned to the peer's certificate and
its bearer token. It is the SDK's transport and error reading (client/transport.py), not an
HTTP client of its own; every failure becomes a ``HostFailure`` naming the peer."""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from corral.client.tls import pinned_context
from corral.client.transport import ApiError, HttpTransport, raise_for
from corral.client.unixhttp import Unreachable
from corral.domain.errors import HostFailure, reason
from corral.migration.frames import Frame, encode
from corral.wire.migration import CommitReply, CommitRequest, IncomingReply, IncomingRequest

INCOMING = "/api/v1/migrations/incoming"


class Remote(Protocol):
    """What the client needs of a peer (the remotes table's record is one)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def cert_pem(self) -> str: ...


class PeerError(HostFailure):
    """The peer answered with an error (its code and message are kept)."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.peer_code = code
        self.peer_status = status


class PeerClient:
    def __init__(self, remote: Remote, timeout: float = 60.0) -> None:
        self.remote = remote
        self._transport = HttpTransport(
            remote.url.rstrip("/"), headers={"Authorization": f"Bearer {remote.token}"},
            timeout=timeout, verify=pinned_context(remote.cert_pem),
            # Peers are reached directly: a proxy from the environment must not intercept.
            trust_env=False,
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, timeout: float | None = None,
                **kwargs: Any) -> Any:
        name = self.remote.name
        if timeout is not None:
            kwargs["timeout"] = timeout
        import httpx  # with the first request to a peer, not with every daemon (~20 MiB)

        try:
            status, data = self._transport.exchange(method, path, **kwargs)
        except (Unreachable, httpx.TransportError) as exc:
            raise HostFailure(
                f"target '{name}' ({self.remote.url}) is unreachable: "
                f"{reason(exc)}"
            ) from exc
        try:
            raise_for(status, data)
        except ApiError as exc:
            raise PeerError(f"target '{name}': {exc.message}", exc.code, exc.status) from None
        if status == 204 or not data:
            return None
        return json.loads(data)

    # The incoming-migration protocol -------------------------------------------------
    def host(self) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", "/api/v1/host", timeout=10.0)
        return found

    def reserve(self, request: IncomingRequest) -> IncomingReply:
        return IncomingReply.model_validate(
            self.request("POST", INCOMING, json=request.model_dump(), timeout=120.0)
        )

    def heartbeat(self, mid: str) -> None:
        self.request("POST", f"{INCOMING}/{mid}/heartbeat", timeout=10.0)

    def send_disk(self, mid: str, frames: list[Frame], file: str | None = None,
                  size: int | None = None) -> None:
        """Frames of the root disk, or of ``file`` (a snapshot's or data disk's file beside
        it, relative to the root disk's directory) whose length is ``size``."""
        params: dict[str, str | int] = {}
        if file is not None:
            params = {"file": file, "size": size or 0}
        self.request("PUT", f"{INCOMING}/{mid}/disk", content=encode(frames), params=params,
                     headers={"content-type": "application/octet-stream"})

    def send_files(self, mid: str, tar: bytes) -> None:
        self.request("PUT", f"{INCOMING}/{mid}/files", content=tar,
                     headers={"content-type": "application/x-tar"})

    def commit(self, mid: str, start: bool, restore: bool = False) -> CommitReply:
        body = CommitRequest(start=start, restore=restore)
        return CommitReply.model_validate(self.request(
            "POST", f"{INCOMING}/{mid}/commit", json=body.model_dump(),
            timeout=120.0,
        ))

    def status(self, mid: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"{INCOMING}/{mid}", timeout=10.0)
        return found

    def abort(self, mid: str, reason: str) -> None:
        """Tell the target to drop everything of ``mid``; already gone counts as done."""
        try:
            self.request("DELETE", f"{INCOMING}/{mid}", params={"reason": reason[:500]},
                         timeout=60.0)
        except PeerError as exc:
            if exc.peer_status != 404:
                raise


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
