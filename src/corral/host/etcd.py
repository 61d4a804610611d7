"""A local etcd member for a one-host cluster (`corral cluster init` without --etcd).

corrald starts ``etcd`` (Debian's etcd-server) in its own session with its data in
``STATE_DIR/etcd`` and its pid in ``STATE_DIR/etcd/etcd.pid``; like a guest it outlives
corrald (the unit's ``KillMode=process``), and a restarted corrald adopts it by the pid file
(or starts it again if it died). ``cluster leave`` stops it.

With ``tls`` (a directory made by ``host/pki.py``: the cluster CA, the member's certificate,
Corral's client certificate) the member serves clients and peers over TLS and accepts only
clients whose certificate the cluster CA signed (``--client-cert-auth``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host import pki
from corral.host.run import require_tool
from corral.host.spawn import Spawned, spawn_on


@dataclass(frozen=True)
class LocalMember:
    data_dir: Path
    name: str
    client_url: str
    peer_url: str
    tls: Path | None = None
    """The directory of the CA and certificates (``host/pki.py``); None: plain HTTP (a
    member made before TLS)."""

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "etcd.pid"

    @property
    def client_files(self) -> pki.TLSFiles | None:
        """What a client of this member presents (Corral's own client certificate)."""
        if self.tls is None:
            return None
        return pki.TLSFiles(self.tls / pki.CLIENT_CA, self.tls / pki.CLIENT_CERT,
                            self.tls / pki.CLIENT_KEY)

    def to_json(self) -> dict[str, str | None]:
        return {"data_dir": str(self.data_dir), "name": self.name,
                "client_url": self.client_url, "peer_url": self.peer_url,
                "tls": None if self.tls is None else str(self.tls)}

    @classmethod
    def from_json(cls, data: dict[str, str | None]) -> LocalMember:
        tls = data.get("tls")
        return cls(Path(str(data["data_dir"])), str(data["name"]), str(data["client_url"]),
                   str(data["peer_url"]), None if tls is None else Path(tls))


def running_pid(member: LocalMember) -> int | None:
    """The pid of this member's etcd if it runs (checked by its command line)."""
    try:
        pid = int(member.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not cmdline or not cmdline[0].endswith(b"etcd"):
        return None
    return pid if str(member.data_dir / "data").encode() in cmdline else None


def ensure_running(member: LocalMember, timeout: float = 20.0) -> int:
    """Adopt the running member or start it; its pid once it answers."""
    pid = running_pid(member)
    if pid is None:
        pid = _start(member)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(member.client_url, member.client_files):
            return pid
        if pid in _ENDED:
            break
        time.sleep(0.1)
    ended = _ENDED.get(pid)
    how = "still not answering" if ended is None else f"etcd exited with {ended}"
    log_tail = _tail(member.data_dir / "etcd.log")
    stop(member)
    raise HostFailure(f"the local etcd member did not come up at {member.client_url} "
                      f"({how}): {log_tail}")


_ENDED: dict[int, int] = {}
"""Exit codes of the members this process started, by pid (set by their reaper thread)."""


def _reap(process: Spawned) -> None:
    _ENDED[process.pid] = process.wait()


def answers(client_url: str, tls: pki.TLSFiles | None = None) -> bool:
    """Whether the etcd at ``client_url`` answers with a leader (with ``tls``: over TLS,
    presenting that client certificate)."""
    request = urllib.request.Request(client_url.rstrip("/") + "/v3/maintenance/status",
                                     data=b"{}", method="POST")
    try:
        context = None if tls is None else tls.context()
        with urllib.request.urlopen(request, timeout=1.0, context=context) as reply:
            return bool(json.loads(reply.read()).get("leader"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def tls_flags(tls: Path) -> list[str]:
    """etcd's flags for TLS with client certificates on both the client and peer ports."""
    ca, cert, key = (str(tls / n) for n in (pki.CA_CERT, pki.MEMBER_CERT, pki.MEMBER_KEY))
    return ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca,
            "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
            "--peer-client-cert-auth"]


def _start(member: LocalMember) -> int:
    etcd = require_tool("etcd", "etcd-server")
    member.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        etcd, "--name", member.name, "--data-dir", str(member.data_dir / "data"),
        "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", f"{member.name}={member.peer_url}",
        "--initial-cluster-state", "new", "--log-outputs", "stderr",
    ]
    if member.tls is not None:
        argv += tls_flags(member.tls)
    log = os.open(member.data_dir / "etcd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                  | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        process = spawn_on(argv, null, log, log, setsid=True)
    finally:
        os.close(log)
        os.close(null)
    member.pid_file.write_text(f"{process.pid}\n")
    # reap it when it ends, so a dead member is no zombie that looks alive
    threading.Thread(target=_reap, args=(process,), name="etcd-reaper", daemon=True).start()
    return process.pid


def stop(member: LocalMember, timeout: float = 10.0) -> None:
    pid = running_pid(member)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() \
                and running_pid(member) == pid and not _zombie(pid):
            time.sleep(0.05)
        if running_pid(member) == pid and not _zombie(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    member.pid_file.unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _tail(path: Path, size: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-size:].strip() or "(no output)"
    except OSError:
        return "(no log)"
