"""CRIU checkpoint/restore of a real container, with an established TCP connection.

Proves the CRIU that ``scripts/install-criu.sh`` builds (4.1.1 + Corral's patch for Linux >=
6.16: without it any TCP socket fails the dump): a busybox container runs a TCP echo server
and a client holding a connection to it over the container's loopback; the container is
dumped (``drivers.lxc.checkpoint``: ``lxc-checkpoint -s``, which passes ``--tcp-established``
to CRIU) and stops, then is restored; the same client process, on the same connection,
still gets its answers, and its console output goes on into ``console.log``. Skipped with
the machine's reason where CRIU does not work. The container is as Corral makes it (console,
tty), unprivileged (the default: Corral makes the idmapped root for LXC's restore) and
privileged.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.lxc import attached, checkpoint
from corral.drivers.lxc.migration import LxcMigration
from corral.drivers.migration import criu_seconds, read_phases
from corral.host import criu
from corral.host.fdwait import readable
from tests.system.fixtures_template import tiny_template
from tests.system.test_lxc_driver import Env, _no_progress, _why_not, env, leftovers

__all__ = ["env", "tiny_template"]  # fixtures, found by pytest through this namespace


def _criu_why_not() -> str:
    if _why_not():
        return _why_not()
    status = criu.probe()
    return "" if status.works else f"CRIU does not work here: {status.reason}"


pytestmark = [pytest.mark.system,
              pytest.mark.skipif(bool(_criu_why_not()), reason=_criu_why_not())]

# Inside the container: an echo server on port 7000 (busybox nc -ll -e cat), and a
# client connected to it whose input is a FIFO (held open by a sleeping writer) and whose
# output is a file. All detached from the exec that started them (setsid, no host fds).
SERVE = "setsid nc -ll -p 7000 -e cat </dev/null >/dev/null 2>&1 &"
CONNECT = ("mkfifo /root/in && : >/root/out && "
           "(setsid sleep 100000 >/root/in </dev/null 2>/dev/null &) && "
           "(setsid nc 127.0.0.1 7000 </root/in >/root/out 2>/dev/null &)")


def sh(env: Env, spec: InstanceSpec, script: str) -> str:
    result = env.driver.exec(spec, ["sh", "-c", script], 20)
    assert result.exit_code == 0, (script, result.stdout, result.stderr)
    return result.stdout.decode()


def wait_for(env: Env, spec: InstanceSpec, script: str, want: str) -> str:
    """Run ``script`` until its output contains ``want`` (or 20 s): its last output."""
    deadline = time.monotonic() + 20
    while True:
        result = env.driver.exec(spec, ["sh", "-c", script], 20)
        said = result.stdout.decode()
        if (result.exit_code == 0 and want in said) or time.monotonic() > deadline:
            return said
        time.sleep(0.2)


def established(env: Env, spec: InstanceSpec) -> list[str]:
    """The container's established TCP connections, as ``local remote`` (netstat)."""
    lines = sh(env, spec, "netstat -tn").splitlines()
    return sorted(" ".join(line.split()[3:5]) for line in lines if "ESTABLISHED" in line)


@pytest.fixture(params=["unprivileged", "privileged"])
def container(env: Env, request: pytest.FixtureRequest) -> Iterator[InstanceSpec]:
    """The default (unprivileged: its root an idmapped mount Corral makes for the restore)
    container, and a privileged one."""
    spec = env.spec("criu1", privileged=request.param == "privileged")
    env.driver.create(spec, env.template, _no_progress)
    try:
        env.driver.start(spec, env.template)
        wait_for(env, spec, "echo up", "up")
        refused = checkpoint.refusal(spec)
        if refused is not None and not spec.privileged:
            pytest.skip(refused)  # the machine's reason (kernel or file system)
        assert refused is None
        yield spec
    finally:
        env.driver.stop(spec, force=True, timeout=5)
        env.driver.delete(spec)
    assert leftovers(env, spec) == []


@pytest.fixture
def images() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-criu-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_established_tcp_connection_survives_dump_and_restore(
        env: Env, container: InstanceSpec, images: Path) -> None:
    spec = container
    sh(env, spec, SERVE)
    assert ":7000 " in wait_for(env, spec, "netstat -tln", ":7000 ")
    sh(env, spec, CONNECT)
    sh(env, spec, "echo before > /root/in")
    assert wait_for(env, spec, "cat /root/out", "before") == "before\n"
    connections = established(env, spec)
    assert len(connections) == 2, connections  # the client's end and the server's end
    client = sh(env, spec, "pidof nc").split()

    # an exec running (lxc-attach's child, outside init's tree: CRIU's dump would succeed
    # without it): named, and the migration's dump refuses before anything is dumped
    ran = threading.Thread(target=env.driver.exec, args=(spec, ["sleep", "39"], 60))
    ran.start()
    try:
        deadline = time.monotonic() + 20
        while "sleep 39" not in str(found := attached.attached(env.driver, spec)):
            assert time.monotonic() < deadline, "the exec never ran"
            time.sleep(0.1)
        assert [command for _pid, command in found] == ["sleep 39"]
        hooks = LxcMigration(env.driver)
        assert "(sleep 39)" in str(hooks.checkpoint_refusal(spec))
        with pytest.raises(Conflict, match=r"pid \d+ \(sleep 39\)"):
            hooks.checkpoint(spec, images / "refused", stop=False)
        # the stopping dump (its consoles detached first): refused, the consoles bound again
        init = env.driver.status(spec).pid
        assert init is not None
        bound = checkpoint._pty_binds(init)
        hooks.before_checkpoint(spec)
        assert checkpoint._pty_binds(init) == {}
        with pytest.raises(Conflict, match=r"\(sleep 39\)"):
            hooks.checkpoint(spec, images / "refused", stop=True)
        assert checkpoint._pty_binds(init) == bound
        assert not (images / "refused").exists()
        assert env.driver.status(spec).state is RuntimeState.RUNNING
    finally:
        sh(env, spec, "kill $(ps | awk '/[s]leep 39/ {print $1}') || true")
        ran.join()
    assert attached.attached(env.driver, spec) == []

    # a dump that leaves it running (the migration's trial dump): its console binds are
    # made again in its mount namespace (host/nsmount.py), the same processes run on
    pid = env.driver.status(spec).pid
    assert pid is not None
    binds = checkpoint._pty_binds(pid)
    assert "/dev/console" in binds
    checkpoint.dump(env.driver, spec, images / "trial", stop=False)
    assert env.driver.status(spec).state is RuntimeState.RUNNING
    assert checkpoint._pty_binds(pid) == binds
    assert sh(env, spec, "pidof nc").split() == client
    assert read_phases(images / "trial", "dump").keys() >= {"console unbind", "lxc-checkpoint"}
    shutil.rmtree(images / "trial")

    began = time.monotonic()
    checkpoint.dump(env.driver, spec, images, stop=True)
    dumped = time.monotonic() - began
    assert env.driver.status(spec).state is RuntimeState.STOPPED
    began = time.monotonic()
    checkpoint.restore(env.driver, spec, images)
    restored = time.monotonic() - began
    own = (criu_seconds(images, "dump"), criu_seconds(images, "restore"))
    assert own[0] is not None and own[1] is not None  # CRIU's own times, from its logs
    print(f"\nlxc-checkpoint dump {dumped * 1000:.0f} ms, restore {restored * 1000:.0f} ms; "
          f"CRIU's own: dump {own[0] * 1000:.0f} ms, restore {own[1] * 1000:.0f} ms")

    assert env.driver.status(spec).state is RuntimeState.RUNNING
    assert sh(env, spec, "pidof nc").split() == client  # the same processes, not new ones
    assert established(env, spec) == connections  # the same connection, not a new one
    sh(env, spec, "echo after > /root/in")
    assert wait_for(env, spec, "cat /root/out", "after") == "before\nafter\n"
    # a restored container is dumped and restored again (its console is Corral's pty now)
    shutil.rmtree(images)
    checkpoint.dump(env.driver, spec, images, stop=True)
    checkpoint.restore(env.driver, spec, images)
    sh(env, spec, "echo again > /root/in")
    assert wait_for(env, spec, "cat /root/out", "again") == "before\nafter\nagain\n"
    assert established(env, spec) == connections
    # init's console (the restored pty) still reaches the console log
    sh(env, spec, "echo corral-console-after-restore > /proc/1/fd/1")
    deadline = time.monotonic() + 10
    while b"corral-console-after-restore" not in env.driver.console_log(spec):
        assert time.monotonic() < deadline, env.driver.console_log(spec)[-500:]
        time.sleep(0.05)
    # and the console answers (its keeper serves it: the restored monitor has none)
    console = env.driver.open_console(spec)
    try:
        console.write(b"echo restored-console-$((6*7))\n")
        seen, deadline = b"", time.monotonic() + 20
        while b"restored-console-42" not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            if readable(console.fileno(), 0.5):
                seen += console.read(4096)
    finally:
        console.close()
