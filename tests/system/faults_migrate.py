"""A container's migration with one side's corrald kill -9'd at a named point (services/
faults.py): the source after reserving, with the container stopped and everything sent but
not committed, and after the target committed; the target while receiving the files and
while committing. After the killed side starts again (and the target's lease ran out): the
container is on exactly one host, in a state the CLI explains, running if it ran; a retry of
the migration succeeds; neither host keeps an orphan; where CRIU works the move takes the
checkpoint path and a process of the container survives wherever it ends up (a whole dump
is restored, never the container restarted from its disk). Run by ``bench/faults.py --kind
migrate`` (each case costs 35 s to 3 min here); the suite's bounded form is the fake
drivers' (tests/integration/test_migration.py: the same points' recovery, and the target
unreachable after the commit was asked)."""

from __future__ import annotations

import json
import os
import shutil
import signal

from corral.host import criu
from corral.services.faults import ENV
from corral.templates.image import TemplateImage
from tests.integration.conftest import wait_until
from tests.system.migration_lab import Host, Lab
from tests.system.orphans import Baseline, orphans

POINTS = ("migrate.source.after_reserve", "migrate.source.before_commit",
          "migrate.source.after_commit", "migrate.target.receiving",
          "migrate.target.adopted", "migrate.target.committing")
EXPLAINED = {"stopped", "running", "error"}
LAB_ENV = {"CORRAL_MIGRATION_LEASE": "3", "CORRAL_MIGRATION_RESOLVE_INTERVAL": "2"}
"""A short lease (the target drops a silent source's reservation) and a source that asks an
unreachable target again every 2 s (an unresolved commit: services/migration/resolve)."""


def skip_reason() -> str | None:
    """Why this host cannot run the cases (None: it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "mkfs.ext4", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed on this host"
    return None


def _where(a: Host, b: Host) -> dict[str, str]:
    """Host name -> ct1's state there."""
    found = {}
    for host in (a, b):
        listed = host.instances()
        if "ct1" in listed:
            found[host.name] = str(listed["ct1"]["state"])
    return found


def _busy(host: Host) -> list[dict[str, object]]:
    ops = json.loads(host.cli("operation", "list", "-f", "json").stdout or "[]")
    return [o for o in ops if o["status"] in ("pending", "running")]


def _logs(*hosts: Host) -> str:
    """The hosts' log lines about migrations (what a failed case prints)."""
    return "\n".join(f"[{h.name}] {line}" for h in hosts
                     for line in (h.state_dir / "corrald.log").read_text().splitlines()
                     if "migrat" in line)[-4000:]


def _left(host: Host, baseline: Baseline) -> list[str]:
    running = {int(str(i["id"])) for i in host.instances().values() if i["state"] == "running"}
    return orphans(host.state_dir, baseline, running, cgroup_root=host.cgroup_root)


def _leave_a_mark(host: Host) -> None:
    """A process of ct1's own session (so CRIU can dump it) that only a checkpoint's restore
    keeps: a restart from the disk loses it."""
    script = ("setsid sh -c 'echo $$ > /root/mark.pid; exec sleep 100001' "
              "</dev/null >/dev/null 2>&1 & sleep 0.2; test -s /root/mark.pid")
    assert wait_until(lambda: host.cli("exec", "ct1", "--", "sh", "-c", script)
                      .returncode == 0, 20)


def _mark_kept(host: Host) -> bool:
    """The process is there (its command exactly: after a restart from the disk the pid
    may be this very check's shell, whose command line names 100001 too)."""
    check = "tr '\\0' ' ' < /proc/$(cat /root/mark.pid)/cmdline"
    said = host.cli("exec", "ct1", "--", "sh", "-c", check)
    return said.returncode == 0 and said.stdout == "sleep 100001 "


def _path_taken(source: Host) -> tuple[str, str]:
    """The path of ct1's first move out of ``source`` (``checkpoint`` where CRIU works) and
    why it was taken."""
    listed = json.loads(source.cli("migration", "list", "-f", "json", check=True).stdout)
    out = [m for m in listed if m["direction"] == "out" and m["instance"] == "ct1"]
    return (str(out[-1]["path"]), str(out[-1]["details"].get("why"))) if out else ("", "")


def run_migrate_case(template: TemplateImage, point: str) -> None:
    """kill -9 of the source's or the target's corrald at ``point`` during a running
    container's migration a -> b; restart; check; retry; check."""
    side = "a" if ".source." in point else "b"
    baseline = Baseline()
    lab = Lab(template)
    try:
        a, b = lab.start(LAB_ENV, ("--test-faults",),
                         {side: {ENV: f"{point}=kill"}})
        killed = a if side == "a" else b
        a.cli("create", "ct1", "--type", "ct", "--template", "tiny", "--disk", "256M",
              check=True)
        a.cli("start", "ct1", check=True)
        _leave_a_mark(a)
        moved = a.cli("migrate", "ct1", "b", timeout=180)
        assert wait_until(lambda: killed.process is not None
                          and killed.process.poll() is not None, 30), \
            f"{point} never fired: {moved.stdout} {moved.stderr}"
        assert killed.process is not None and killed.process.returncode == -signal.SIGKILL
        killed.start(LAB_ENV)

        def settled() -> bool:  # the source's rollback, the target's lease: done
            return not _busy(a) and not _busy(b) and len(_where(a, b)) == 1

        assert wait_until(settled, 60), (_where(a, b), _busy(a), _busy(b), _logs(a, b))
        where = _where(a, b)
        assert set(where.values()) <= EXPLAINED, where
        (host_name, state), = where.items()
        assert state == "running", where  # it ran before: it runs, here or there
        here, there = (a, b) if host_name == "a" else (b, a)
        assert here.cli("exec", "ct1", "--", "true").returncode == 0
        path, why = _path_taken(a)
        if criu.probe().works:  # the container CRIU can move: it goes by checkpoint
            assert path == "checkpoint", why
        if path == "checkpoint":  # a whole dump was there, or nothing stopped yet
            assert _mark_kept(here), (point, _logs(a, b))
        for host in (a, b):
            assert _left(host, baseline) == [], (host.name, _left(host, baseline))
        here.cli("migrate", "ct1", there.name, check=True, timeout=180)
        assert _where(a, b) == {there.name: "running"}
        for host in (a, b):
            assert _left(host, baseline) == [], (host.name, _left(host, baseline))
        there.cli("delete", "--force", "ct1", check=True)
        for host in (a, b):
            assert _left(host, baseline) == [], (host.name, _left(host, baseline))
    finally:
        lab.close()
