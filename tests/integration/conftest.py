"""A real corrald (fake driver) in a subprocess, its own state dir and socket, per test module."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.client import CorralClient


@dataclass
class Daemon:
    state_dir: Path
    socket: Path
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def client(self) -> CorralClient:
        return CorralClient(socket=str(self.socket))

    def cli(
        self, *args: str, stdin: bytes = b"", check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``env``: variables over the defaults (e.g. ``COLUMNS``, or ``TTY_COMPATIBLE=1``
        for Rich to draw as on a terminal)."""
        env = {**os.environ, "CORRAL_SOCKET": str(self.socket), "COLUMNS": "200", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "corral.cli.main", *args], input=stdin.decode(),
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} failed: {proc.stderr}")
        return proc


def write_fake_template(templates: Path, name: str = "tiny") -> None:
    directory = templates / name
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("etc/hostname")
        data = b"fake\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (directory / "rootfs.tar.gz").write_bytes(buffer.getvalue())
    (directory / "metadata.json").write_text(json.dumps({
        "name": name, "version": "1", "os": "busybox", "arch": "x86_64",
        "resources": {"cpus": 1, "memory": 128 * 1024**2, "disk": 64 * 1024**2},
    }))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(state_dir: Path) -> dict[str, str]:
    """Each test daemon gets its own cgroup root, the same for every restart on ``state_dir``,
    so that several daemons on this host never share guests' cgroup paths."""
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]
    # the log on stderr (into STATE_DIR/corrald.log), never the host's journal
    return dict(os.environ, CORRAL_CGROUP_ROOT=f"corral-test-{digest}", CORRAL_LOG_TO="stderr")


def start_daemon(state_dir: Path, drivers: str = "fake", prefix: tuple[str, ...] = (),
                 options: tuple[str, ...] = (), node: str = "test-node",
                 port: int | None = None) -> Daemon:
    """``prefix`` wraps the daemon's command (e.g. ``nsenter --net=…`` to run it in a netns);
    ``options`` are more corrald options (e.g. ``--session-idle 2``); ``port``: the TLS
    listener's (default: a free one)."""
    sock = state_dir / "corral.sock"
    port = port or free_port()
    token_file = state_dir / "token"
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "corral.daemon.main", "--state-dir", str(state_dir),
         "--socket", str(sock), "--drivers", drivers, "--listen", f"127.0.0.1:{port}",
         "--token-file", str(token_file), "--node", node, "--log-level", "warning",
         *options],
        stderr=open(state_dir / "corrald.log", "ab"),  # noqa: SIM115
        env=daemon_env(state_dir),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sock.exists() and token_file.exists() and (state_dir / "tls" / "cert.pem").exists():
            try:
                with CorralClient(socket=str(sock)) as c:
                    c.host_info()
                break
            except Exception:
                pass
        if process.poll() is not None:
            raise RuntimeError((state_dir / "corrald.log").read_text())
        time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("corrald did not come up")
    return Daemon(state_dir, sock, f"https://127.0.0.1:{port}", token_file.read_text().strip(),
                  process)


def stop_daemon(daemon: Daemon, sig: int = signal.SIGTERM) -> None:
    if daemon.process.poll() is None:
        daemon.process.send_signal(sig)
        try:
            daemon.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
    remove_empty_cgroups(daemon_env(daemon.state_dir)["CORRAL_CGROUP_ROOT"])


def delete_everything(state_dir: Path, prefix: tuple[str, ...] = ()) -> None:
    """Whatever a failed test left: a fresh real-driver daemon on ``state_dir`` force-deletes
    every instance, then stops."""
    cleanup = start_daemon(state_dir, drivers="real", prefix=prefix)
    try:
        for item in json.loads(cleanup.cli("list", "--format", "json").stdout or "[]"):
            cleanup.cli("delete", "--force", item["name"])
    finally:
        stop_daemon(cleanup)
        remove_nft_tables(state_dir, prefix)


def remove_nft_tables(state_dir: Path, prefix: tuple[str, ...] = ()) -> None:
    """The daemon's own nftables tables (``network.nftables.table_for``): a corrald keeps
    them when it stops (its guests stay filtered); a test's go with its state directory."""
    from corral.network.nftables import FAMILIES, table_for

    table = table_for(str(state_dir.resolve()))
    for family in FAMILIES:
        subprocess.run([*prefix, "nft", "delete", "table", family, table],
                       capture_output=True, check=False)


def emptied(daemon: Daemon) -> bool:
    """Force-delete, through the still running ``daemon``, every instance it holds; whether
    it then answered that it holds none (False when it is gone or anything failed)."""
    if daemon.process.poll() is not None:
        return False
    try:
        with daemon.client() as c:
            for item in c.list_instances():
                c.wait(c.delete_instance(item.name, force=True).id, 120)
            return not c.list_instances()
    except Exception:
        return False


def stop_and_clean(daemon: Daemon, prefix: tuple[str, ...] = ()) -> None:
    """Stop a real-driver test daemon and remove what it made: its instances are
    force-deleted by the daemon itself while it runs; only where that did not leave it empty
    (it died, a delete failed) does a fresh daemon on its state directory clean up
    (``delete_everything``, ~2-3 s here). Its nftables tables go either way."""
    clean = emptied(daemon)
    stop_daemon(daemon)
    if clean:
        remove_nft_tables(daemon.state_dir, prefix)
    else:
        delete_everything(daemon.state_dir, prefix)


@contextlib.contextmanager
def real_daemon_in(state_dir: Path, prefix: tuple[str, ...] = ()) -> Iterator[Daemon]:
    """A real-driver corrald on ``state_dir``; afterwards every instance it left is
    force-deleted and ``state_dir`` removed."""
    daemon = start_daemon(state_dir, drivers="real", prefix=prefix)
    try:
        yield daemon
    finally:
        try:
            stop_and_clean(daemon, prefix)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], seconds: float = 30) -> bool:
    """Whether ``predicate`` became true within ``seconds`` (polled every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def remove_empty_cgroups(root: str, base: Path = Path("/sys/fs/cgroup")) -> None:
    """Remove the test daemon's cgroup directories that hold no process, deepest first.

    Guests still running keep theirs (rmdir of a populated cgroup fails), so this is safe
    between a kill -9 and a restart too.
    """
    for top in [base / root, *(h / root for h in base.iterdir() if h.is_dir())]:
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()),
                             key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    write_fake_template(tmp_path / "templates")
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        stop_daemon(d)
