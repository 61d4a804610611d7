"""The HTTP transport to a corrald and the one reading of its error answers.

Shared by ``CorralClient`` (CLI, SDK) and by the client one corrald uses to drive another
(``migration/peer.py``), so a request, its TLS verification and an error body
(``{"error": code, "message": ...}``) are handled one way. httpx is imported on first use:
most CLI commands only talk JSON on the local socket (``unixhttp``), and importing httpx
costs ~50 ms of every start.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from corral.client.unixhttp import Unreachable

if TYPE_CHECKING:
    import httpx


class ApiError(Exception):
    """The daemon refused or failed a request; ``message`` is meant for the user."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def raise_for(status: int, data: bytes) -> None:
    """ApiError with the daemon's code and message for a 4xx/5xx answer."""
    if status < 400:
        return
    text = data.decode(errors="replace")
    try:
        body = json.loads(data)
        code, message = body.get("error", "error"), body.get("message")
        if message is None:
            message = str(body.get("detail", text))
    except (ValueError, AttributeError):
        code, message = "error", text
    raise ApiError(status, str(code), str(message))


class HttpTransport:
    """One httpx client (a connection pool) to ``base_url``, over TCP/TLS or the Unix socket
    ``uds``; ``verify``: True, or an ``ssl.SSLContext`` pinning a peer's certificate;
    ``trust_env=False`` keeps proxies from the environment out of it."""

    def __init__(self, base_url: str, *, headers: dict[str, str], timeout: float,
                 verify: Any = True, uds: str | None = None, trust_env: bool = True) -> None:
        self.base_url = base_url
        self.headers = headers
        self.verify = verify
        self._timeout = timeout
        self._uds = uds
        self._trust_env = trust_env
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """The httpx client, made on first use (for streamed up- and downloads)."""
        if self._client is None:
            import httpx

            transport = None if self._uds is None else httpx.HTTPTransport(uds=self._uds)
            self._client = httpx.Client(
                base_url=self.base_url, headers=self.headers, timeout=self._timeout,
                verify=self.verify, transport=transport, trust_env=self._trust_env)
        return self._client

    def exchange(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        """Status and body of one request. A connection that cannot be made is
        ``Unreachable``; other transport failures (a timeout, a broken answer) are httpx's
        ``TransportError``s."""
        client = self.client
        import httpx  # loaded by self.client

        try:
            response = client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc
        return response.status_code, response.content

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
