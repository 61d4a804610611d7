"""The QEMU driver's QMP sessions (drivers/qemu/qmp.py) against real QEMU monitors: bare QEMUs
(``-machine none``, no guest) so each case takes a fraction of a second."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.qemu.qmp import MONITORS, close_monitor, monitor, qmp, qmp_many

pytestmark = [pytest.mark.system]
if shutil.which("qemu-system-x86_64") is None:
    pytestmark.append(pytest.mark.skip(reason="qemu-system-x86_64 is not installed"))


def _start_qemu(sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([
        "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
        "-chardev", f"socket,id=qmp,path={sock},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("QEMU did not create its QMP socket")
        time.sleep(0.01)
    return proc


@pytest.fixture
def qemus(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Start bare QEMUs on demand (by name); every one is killed and its session closed."""
    started: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def start(name: str) -> Path:
        sock = tmp_path / f"{name}.sock"
        sock.unlink(missing_ok=True)
        started.append((sock, _start_qemu(sock)))
        return sock

    yield start
    for sock, proc in started:
        close_monitor(sock)
        proc.kill()
        proc.wait()


def _qmp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "qmp"]


def test_concurrent_callers_share_one_session_on_one_thread(
        qemus: Callable[[str], Path]) -> None:
    socks = [qemus(f"vm{i}") for i in range(3)]
    errors: list[BaseException] = []
    names: list[str] = []

    def caller(sock: Path) -> None:
        try:
            for _ in range(20):
                status, name = qmp_many(sock, [("query-status", None), ("query-name", None)])
                assert status["status"] in ("running", "prelaunch")
                names.append(str(name))
        except BaseException as exc:  # reported below
            errors.append(exc)

    # 4 threads per VM at once: QEMU serves one client per monitor, so a second connection
    # would get no greeting and time out; all of them answered means they shared one
    threads = [threading.Thread(target=caller, args=(s,)) for s in socks for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(names) == 3 * 4 * 20
    assert len(_qmp_threads()) == 1  # one loop thread, however many VMs
    assert all(str(s) in MONITORS.paths() for s in socks)


def test_every_subscriber_gets_every_event(qemus: Callable[[str], Path]) -> None:
    sock = qemus("vm")
    session = monitor(sock)
    with session.subscribe(["STOP", "RESUME"]) as first, session.subscribe(["STOP"]) as second:
        qmp(sock, "stop")
        qmp(sock, "cont")
        got_first = [first.get(10), first.get(10)]
        got_second = second.get(10)
        assert [e["event"] for e in got_first if e] == ["STOP", "RESUME"]
        assert got_second is not None and got_second["event"] == "STOP"
        assert second.get(0.2) is None  # RESUME was not asked for: nothing queued for it


def test_a_new_qemu_on_the_same_socket_gets_a_new_session(
        qemus: Callable[[str], Path], tmp_path: Path) -> None:
    sock = qemus("vm")
    old = monitor(sock)
    assert qmp(sock, "query-status")["status"] in ("running", "prelaunch")
    qmp(sock, "quit")
    close_monitor(sock)  # what the driver does when the VM stops
    with pytest.raises(HostFailure, match="closed"):
        old.execute("query-status")  # a late caller does not reconnect a closed session
    qemus("vm")  # same socket path, new process: the lazy session connects to it
    assert qmp(sock, "query-status")["status"] in ("running", "prelaunch")
    assert monitor(sock) is not old


def test_a_session_reconnects_after_qemu_hung_up(qemus: Callable[[str], Path]) -> None:
    """QEMU restarted on the same path without a driver stop in between (the VM was
    started again by a corrald that did not see it die): the session noticed the hang-up
    and connects again at the next call."""
    sock = qemus("vm")
    session = monitor(sock)
    assert qmp(sock, "query-status")
    qmp(sock, "quit")
    qemus("vm")
    assert qmp(sock, "query-status")["status"] in ("running", "prelaunch")
    assert monitor(sock) is session


def test_a_session_left_by_a_dead_process_is_free_again(qemus: Callable[[str], Path]) -> None:
    """A corrald restart as QEMU sees it: the old process held the monitor and died (kill
    -9: nothing was closed politely); the new process opens its own session."""
    sock = qemus("vm")
    child = subprocess.run([
        sys.executable, "-c",
        "import os, sys\n"
        "from pathlib import Path\n"
        "from corral.drivers.qemu.qmp import qmp\n"
        "qmp(Path(sys.argv[1]), 'query-status')\n"
        "os.kill(os.getpid(), 9)\n", str(sock)], timeout=60, check=False)
    assert child.returncode == -9
    assert qmp(sock, "query-status")["status"] in ("running", "prelaunch")


def test_an_idle_session_does_not_wake_its_thread(qemus: Callable[[str], Path]) -> None:
    sock = qemus("vm")
    qmp(sock, "query-status")
    (thread,) = _qmp_threads()
    status = Path(f"/proc/self/task/{thread.native_id}/status")

    def switches() -> int:
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
        raise AssertionError("no voluntary_ctxt_switches")

    before = switches()
    time.sleep(3.0)  # a poll loop of any period up to a second wakes it 3 times or more
    # QEMU may send an event of its own (the guest is booting): that is a wake-up or two
    assert switches() - before <= 2
