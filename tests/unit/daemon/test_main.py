"""`corrald --help`: every option explained; the listener is TLS and says where its
certificate is."""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from corral.daemon.main import (
    GC_YOUNG,
    build_parser,
    migrate_apart,
    parse_args,
    raise_fd_limit,
    tune_gc,
)
from corral.state.database import at_head


def test_every_option_has_help() -> None:
    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert {a.option_strings[0] for a in actions} >= {
        "--state-dir", "--socket", "--listen", "--token-file", "--drivers", "--node",
        "--log-level"}
    undocumented = [a.option_strings[0] for a in actions if not (a.help or "").strip()]
    assert undocumented == []


def test_the_help_says_the_listener_is_tls_and_where_the_certificate_is() -> None:
    shown = subprocess.run([sys.executable, "-m", "corral.daemon.main", "--help"],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    flat = " ".join(shown.split())
    assert "serve HTTP" not in flat
    assert "--listen HOST:PORT also serve the API over TLS (HTTPS) on HOST:PORT" in flat
    assert "STATE_DIR/tls/cert.pem" in flat
    for variable in ("CORRAL_STATE_DIR", "CORRAL_SOCKET", "CORRAL_LISTEN", "CORRAL_DRIVERS",
                     "CORRAL_NODE", "CORRAL_LOG_LEVEL"):
        assert f"(${variable})" in flat


def test_log_levels_are_named_in_any_case() -> None:
    assert parse_args(["--log-level", "WARNING"]).log_level == "warning"


def test_tune_gc_freezes_what_exists_and_widens_the_young_generation() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_fd_limit_is_raised_toward_the_hard_limit_and_never_lowered() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
        got = raise_fd_limit(512)
        assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(512, hard)
        assert raise_fd_limit(300) == min(512, hard)  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_pending_migration_runs_apart_and_leaves_alembic_out_of_the_daemon(
        tmp_path: Path) -> None:
    """``migrate_apart`` (before the services open the database): the schema made by a child
    process; the caller (a fresh interpreter here, as corrald is) never imports Alembic or
    SQLAlchemy; a database at head is only looked at."""
    path = tmp_path / "corral.db"
    probe = ("import sys, pathlib; from corral.daemon.main import migrate_apart;"
             " from corral.state.database import at_head; p = pathlib.Path(sys.argv[1]);"
             " migrate_apart(p); migrate_apart(p);"
             " print(at_head(p), 'alembic' in sys.modules, 'sqlalchemy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["True", "False", "False"]
    assert at_head(path)


def test_a_migration_that_fails_apart_says_why(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(RuntimeError, match=r"migrating the database .* failed: \S"):
        migrate_apart(path)
