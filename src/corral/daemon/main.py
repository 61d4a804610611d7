"""corrald: open the state, re-adopt guests, serve the API on a Unix socket (and TCP, with
the web console under /ui)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import secrets
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from corral.api.app import LocalAdmin, TokenAuth, create_app
from corral.daemon import logs
from corral.host.run import run_python_apart
from corral.host.tls import ensure_identity_apart
from corral.services import faults
from corral.services.authlimit import DEFAULT_LIMIT, DEFAULT_WINDOW
from corral.services.core import Corral, Settings
from corral.services.sessions import DEFAULT_IDLE, DEFAULT_LIFETIME
from corral.state.database import DATABASE_FILE, at_head

log = logging.getLogger("corral.daemon")

DEFAULT_SOCKET = "/run/corral/corral.sock"
GC_YOUNG = 20_000
"""Container objects allocated (net of those freed) before the youngest generation is
collected; Python's default is 700. A ``list`` of 1000 instances holds ~2000 new objects at
its peak and frees them all when it ends: at 700 every list ran ~3 young collections that
promoted its live views, and one list in ~50 paid a full collection of the ~50k objects
1000 instances keep (40-160 ms here, the p99). At 20 000, 150 lists ran none
(bench/list_tail.py)."""


CLOSE_GRACE = 1.0
"""Seconds a connection uvicorn is closing at shutdown may take to finish closing before it is
aborted."""


class _Server(uvicorn.Server):
    """corrald handles SIGTERM/SIGINT itself (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, with connections it closed still open after
        ``CLOSE_GRACE`` cut at the socket: closing a TLS connection waits for the client's
        close_notify, which an idle keep-alive client (a pooled httpx connection, another
        corrald) never sends until it reads again, so each one held the stop for asyncio's
        30 s SSL shutdown timeout. A request still being answered is not closing: it
        finishes as before."""
        # each connection's socket, taken while its transport still tells (a TLS transport
        # closed twice forgets its layer below on Python 3.11, and with it its socket)
        raw = {id(c): getattr(c, "transport", None) for c in self.server_state.connections}
        socks = {key: t.get_extra_info("socket") for key, t in raw.items() if t is not None}
        reaper = asyncio.create_task(self._cut_lingering(socks))
        try:
            await super().shutdown(sockets)
        finally:
            reaper.cancel()

    async def _cut_lingering(self, socks: dict[int, socket.socket | None]) -> None:
        closing_since: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            now = loop.time()
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                sock = socks.get(id(connection))
                if transport is None or sock is None or not transport.is_closing():
                    continue
                since = closing_since.setdefault(id(connection), now)
                if now - since >= CLOSE_GRACE:
                    # both directions end: the event loop sees the end of the stream and
                    # the connection is lost (an already closed socket raises)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """corrald's options; each one's default comes from a CORRAL_* variable."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="corrald", description="The Corral host daemon: serves the API on a Unix socket "
        "(local root) and, with --listen, over TLS with bearer tokens.",
        epilog="An option's default comes from the environment variable named in its help. With "
        "--listen, clients need the token (--token-file) and the certificate "
        "STATE_DIR/tls/cert.pem (made at first start, self-signed; clients pin it: "
        "CORRAL_URL=https://HOST:PORT CORRAL_TOKEN=… CORRAL_TLS_CERT=cert.pem corral …).")
    parser.add_argument("--state-dir", default=env("CORRAL_STATE_DIR", "/var/lib/corral"),
                        metavar="DIR",
                        help="the database, instances' disks, templates, TLS identity "
                             "(tls/), the API token; default %(default)s ($CORRAL_STATE_DIR)")
    parser.add_argument("--socket", default=env("CORRAL_SOCKET", DEFAULT_SOCKET), metavar="PATH",
                        help="the Unix socket of the API (mode 0600: root on this host is "
                             "an administrator there); default %(default)s ($CORRAL_SOCKET)")
    parser.add_argument("--listen", default=env("CORRAL_LISTEN", ""), metavar="HOST:PORT",
                        help="also serve the API over TLS (HTTPS) on HOST:PORT, e.g. "
                             "0.0.0.0:8443, with bearer tokens: the daemon's token is an "
                             "administrator, users' tokens are those users; the certificate "
                             "is STATE_DIR/tls/cert.pem (default: no TCP) ($CORRAL_LISTEN)")
    parser.add_argument("--token-file", default=env("CORRAL_TOKEN_FILE", ""), metavar="FILE",
                        help="the daemon's API token for --listen, made if missing "
                             "(default: STATE_DIR/api.token) ($CORRAL_TOKEN_FILE)")
    parser.add_argument("--advertise", default=env("CORRAL_ADVERTISE", ""), metavar="URL",
                        help="the https://HOST:PORT peers reach --listen at (default: it) "
                             "($CORRAL_ADVERTISE)")
    parser.add_argument("--insecure-http", action="store_true",
                        help="serve --listen as plain HTTP (tests, trusted networks only)")
    parser.add_argument("--drivers", default=env("CORRAL_DRIVERS", "real"),
                        choices=["real", "fake"],
                        help="real: LXC containers and QEMU VMs; fake: an in-memory driver "
                             "for both kinds (tests, API development); default %(default)s "
                             "($CORRAL_DRIVERS)")
    parser.add_argument("--node", default=env("CORRAL_NODE", ""), metavar="NAME",
                        help="this host's name among Corral hosts (default: the host name) "
                             "($CORRAL_NODE)")
    parser.add_argument("--auth-failures", type=int,
                        default=int(env("CORRAL_AUTH_FAILURES", str(DEFAULT_LIMIT))), metavar="N",
                        help="failed authentications (API tokens and console logins "
                             "together) an address may make per --auth-window before it is "
                             "refused; default %(default)s ($CORRAL_AUTH_FAILURES)")
    parser.add_argument("--auth-window", type=float,
                        default=float(env("CORRAL_AUTH_WINDOW", str(DEFAULT_WINDOW))),
                        metavar="SECONDS", help="default %(default)s ($CORRAL_AUTH_WINDOW)")
    parser.add_argument("--session-idle", type=float,
                        default=float(env("CORRAL_SESSION_IDLE", str(DEFAULT_IDLE))),
                        metavar="SECONDS",
                        help="a web console session ends after this long without a request; "
                             "default %(default)s ($CORRAL_SESSION_IDLE)")
    parser.add_argument("--session-lifetime", type=float,
                        default=float(env("CORRAL_SESSION_LIFETIME", str(DEFAULT_LIFETIME))),
                        metavar="SECONDS",
                        help="and after this long in any case; default %(default)s "
                             "($CORRAL_SESSION_LIFETIME)")
    parser.add_argument("--log-level", default=env("CORRAL_LOG_LEVEL", "info"),
                        type=str.lower, choices=["debug", "info", "warning", "error", "critical"],
                        help="the least severe messages corrald logs; default %(default)s "
                             "($CORRAL_LOG_LEVEL)")
    parser.add_argument("--log-to", default=env("CORRAL_LOG_TO", "auto"),
                        choices=["auto", "journal", "stderr"],
                        help="journal: systemd's journal, with the fields INSTANCE, OPERATION "
                             "and USER (journalctl -t corrald INSTANCE=NAME); stderr: JSON "
                             "lines (or into --log-file); auto: the journal where "
                             "/run/systemd/journal/socket exists; default %(default)s "
                             "($CORRAL_LOG_TO)")
    parser.add_argument("--log-file", default=env("CORRAL_LOG_FILE", ""), metavar="FILE",
                        help="write the JSON lines to FILE instead of stderr, reopened when "
                             "logrotate moves it (when not logging to the journal) "
                             "($CORRAL_LOG_FILE)")
    parser.add_argument("--history-interval", type=float,
                        default=float(env("CORRAL_HISTORY_INTERVAL", "60")), metavar="SECONDS",
                        help="seconds between two readings of every instance for the graphs' "
                             "history (0: no history); default %(default)s "
                             "($CORRAL_HISTORY_INTERVAL)")
    parser.add_argument("--test-faults", action="store_true", help=argparse.SUPPRESS)
    # tests only: honour $CORRAL_TEST_FAULTS (services/faults.py); never in the shipped unit
    return parser


def _token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


FD_LIMIT = 65536
"""Open descriptors corrald asks for (its soft limit, up to the hard one): it keeps a pidfd
per running container, so the usual soft limit of 1024 (systemd's default) ran out near
1000 containers -- and then every process it spawns (lxc-start, QEMU) fails too."""


def raise_fd_limit(want: int = FD_LIMIT) -> int:
    """Raise the soft limit of open descriptors toward ``want`` (never above the hard limit,
    never lowered); the soft limit then."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def migrate_apart(path: Path) -> None:
    """The schema's pending migration (``state.database.migrate``) run by a child process:
    corrald's memory then never holds Alembic and SQLAlchemy (imported, they stay: ~22 MiB
    of RSS for the daemon's whole life after a first start or an upgrade). The services'
    ``Database.open`` afterwards finds the file at head. Tests and tools migrate in their
    own process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if at_head(path):
        return
    failed = run_python_apart("import sys, pathlib; from corral.state.database import "
                              "migrate; migrate(pathlib.Path(sys.argv[1]))", str(path))
    if failed is not None:
        raise RuntimeError(f"migrating the database {path} failed: {failed}")


def tune_gc() -> None:
    """Everything imported and built so far lives as long as the daemon: out of the
    collector's sight (a full collection no longer walks it; measured: several ms each, every
    few requests, on the start path); and a young generation larger than one request's
    garbage (``GC_YOUNG``)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


async def serve(args: argparse.Namespace) -> None:
    state_dir = Path(args.state_dir)
    limit = raise_fd_limit()
    if limit < FD_LIMIT:
        log.warning("open files limited to %d (hard limit): about that many running "
                    "containers at most (LimitNOFILE)", limit)
    if args.test_faults:
        faults.arm(os.environ.get(faults.ENV, ""))
    # a pending schema migration runs in a child: Alembic never enters the daemon's memory
    await asyncio.to_thread(migrate_apart, state_dir / DATABASE_FILE)
    corral = Corral(Settings(
        state_dir=state_dir, driver_mode=args.drivers, node=args.node,
        auth_failures=args.auth_failures, auth_window=args.auth_window,
        session_idle=args.session_idle, session_lifetime=args.session_lifetime,
        history_interval=args.history_interval))
    token_file = Path(args.token_file or state_dir / "api.token")
    token = _token(token_file) if args.listen else (
        token_file.read_text().strip() if token_file.is_file() else None)
    if args.listen and not args.insecure_http:  # before start: the cluster publishes it
        host, _, port = args.listen.rpartition(":")
        corral.remotes.advertise_url = args.advertise or f"https://{host or '127.0.0.1'}:{port}"
        corral.remotes.own_token = token
    corral.remotes.make_identity = ensure_identity_apart  # cryptography stays out of corrald
    await asyncio.to_thread(corral.start)  # drivers block (QMP runs its own loop)
    app = create_app(corral)  # lifecycle actions skip only its routing (api/fastpath.py)
    tune_gc()
    socket_path = Path(args.socket)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    # A request with a token runs as the token's identity on the socket too (api/identity)
    servers = [_Server(uvicorn.Config(
        LocalAdmin(app, token, corral.users.authenticate), uds=str(socket_path),
        log_config=None, lifespan="off", ws_ping_interval=None))]
    if args.listen:
        # the web console (FastAPI pages, jinja2) loads only with a TCP listener to serve it
        from corral.web.app import console_app
        from corral.web.mount import ConsoleBeside

        assert token is not None
        host, _, port = args.listen.rpartition(":")
        tls: dict[str, str] = {}
        if not args.insecure_http:  # a self-signed identity, pinned by peers (host/tls.py)
            identity = corral.remotes.identity
            tls = {"ssl_keyfile": str(identity.key), "ssl_certfile": str(identity.cert)}
        # The web console (/ui, session cookies) beside the API (bearer tokens): one listener,
        # one certificate, one failed-authentication limit
        listener = ConsoleBeside(
            TokenAuth(app, token, corral.users.authenticate, corral.auth_limiter,
                      member=corral.cluster.forwarder.member_caller),
            console_app(corral, secure=not args.insecure_http))
        servers.append(_Server(uvicorn.Config(
            listener, host=host or "127.0.0.1",
            port=int(port), log_config=None, lifespan="off", ws_ping_interval=None, **tls,  # type: ignore[arg-type]
        )))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("stopping corrald; guests keep running")
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("corrald serving on %s%s", socket_path, f" and {args.listen}" if args.listen else "")

    async def guard_socket() -> None:
        while not servers[0].started and not servers[0].should_exit:
            await asyncio.sleep(0.01)
        if socket_path.exists():
            socket_path.chmod(0o600)  # local root only: that is the Unix socket's auth

    try:
        await asyncio.gather(guard_socket(), *(server.serve() for server in servers))
    finally:
        corral.close()
        socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.setup(args.log_level, args.log_to, args.log_file)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
