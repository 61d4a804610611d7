"""The journal's native protocol, read back by a real systemd-journald: a namespaced one the
test starts (its own socket under /run/systemd/journal.NS, its own files), stopped and
removed afterwards."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.daemon import logs
from corral.host import journal
from corral.services.operations import requester
from corral.services.scope import Scope, current

JOURNALD = Path("/lib/systemd/systemd-journald")


def test_encode_plain_and_multiline_values() -> None:
    data = journal.encode({"MESSAGE": "one\ntwo", "INSTANCE": "web1"})
    assert data == (b"MESSAGE\n" + struct.pack("<Q", 7) + b"one\ntwo\n" + b"INSTANCE=web1\n")
    with pytest.raises(ValueError, match="not a journal field name"):
        journal.encode({"_UID": "0"})  # the journal's own (trusted) fields are not ours
    with pytest.raises(ValueError):
        journal.encode({"lower": "x"})


def test_sending_to_no_journal_does_not_raise(tmp_path: Path) -> None:
    sink = journal.Journal(tmp_path / "none")
    assert sink.send({"MESSAGE": "x"}) is False and sink.dropped == 1
    sink.close()


@pytest.fixture
def journald() -> Iterator[tuple[str, Path]]:
    """A real journald in its own namespace: (namespace, its socket)."""
    if not JOURNALD.exists():
        pytest.skip(f"{JOURNALD} is not installed (package systemd)")
    if os.geteuid() != 0:
        pytest.skip("systemd-journald needs root to bind its socket under /run/systemd")
    namespace = f"corral-history-{uuid.uuid4().hex[:8]}"
    run_dir = Path(f"/run/systemd/journal.{namespace}")
    machine = Path("/etc/machine-id").read_text().strip()
    files = Path(f"/var/log/journal/{machine}.{namespace}")
    proc = subprocess.Popen([str(JOURNALD), namespace], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not journal.available(run_dir / "socket"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("systemd-journald did not start here: "
                            f"{proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        yield namespace, run_dir / "socket"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(files, ignore_errors=True)


def _entries(namespace: str, **match: str) -> list[dict[str, object]]:
    """The entries journalctl reads from the namespace's files (journald flushed them)."""
    subprocess.run(["journalctl", f"--namespace={namespace}", "--sync"], check=False,
                   capture_output=True, timeout=30)
    out = subprocess.run(
        ["journalctl", f"--namespace={namespace}", "-o", "json", "--no-pager",
         *(f"{k}={v}" for k, v in match.items())],
        capture_output=True, text=True, timeout=30, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_corrald_entries_carry_instance_operation_and_user(journald: tuple[str, Path]) -> None:
    namespace, sock = journald
    handler = logs.handler_for("auto", socket=sock)
    assert isinstance(handler, logs.JournalHandler)
    logger = logging.getLogger("corral.test-journal")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        scope = current.set(Scope("op-1234", "start", "web1", "ann"))
        try:
            logger.warning("disk %s is nearly full\nsecond line", "root")
        finally:
            current.reset(scope)
        user = requester.set("bob")
        try:
            logger.info("a request outside any operation")
        finally:
            requester.reset(user)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        handler.close()

    def found() -> list[dict[str, object]]:
        return _entries(namespace, SYSLOG_IDENTIFIER="corrald")

    deadline = time.monotonic() + 20
    while len(entries := found()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(entries) == 3, entries
    first, second, third = entries
    assert first["MESSAGE"] == "disk root is nearly full\nsecond line"
    assert (first["INSTANCE"], first["OPERATION"], first["USER"]) == ("web1", "op-1234", "ann")
    assert first["PRIORITY"] == "4" and first["LOGGER"] == "corral.test-journal"
    assert second["USER"] == "bob" and "INSTANCE" not in second
    assert "RuntimeError: boom" in str(third["MESSAGE"]) and third["PRIORITY"] == "3"
    assert [e["MESSAGE"] for e in _entries(namespace, INSTANCE="web1")] == [first["MESSAGE"]]


def test_auto_without_a_journal_writes_json_lines(tmp_path: Path) -> None:
    target = tmp_path / "log" / "corrald.log"
    handler = logs.handler_for("auto", str(target), socket=tmp_path / "no-socket")
    logger = logging.getLogger("corral.test-file")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        scope = current.set(Scope("op-9", "stop", "db1", None))
        try:
            logger.info("stopping")
        finally:
            current.reset(scope)
    finally:
        logger.removeHandler(handler)
        handler.close()
    entry = json.loads(target.read_text())
    assert (entry["message"], entry["instance"], entry["operation"]) == ("stopping", "db1",
                                                                       "op-9")
    assert "user" not in entry and entry["level"] == "info"


def test_a_datagram_too_big_is_cut_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        sink = journal.Journal(path)
        assert sink.send({"MESSAGE": "x" * 500_000})
        data = server.recv(1 << 20)
        sink.close()
    assert data.startswith(b"MESSAGE=") and len(data) == len(b"MESSAGE=\n") + journal.MAX_VALUE
