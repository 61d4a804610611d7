from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers.lxc import startenv
from corral.drivers.lxc.driver import _stale_config


def test_start_path_leaves_out_the_directories_of_the_shadow_tools(tmp_path: Path) -> None:
    shadow, other, gid_only = tmp_path / "bin", tmp_path / "sbin", tmp_path / "gbin"
    for d in (shadow, other, gid_only):
        d.mkdir()
    (shadow / "newuidmap").touch()
    (gid_only / "newgidmap").touch()
    (other / "apparmor_parser").touch()
    search = f"{shadow}:{other}:{gid_only}"
    assert startenv.start_path(search) == str(other)


def test_start_env_keeps_the_rest_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_VAR", "kept")
    env = startenv.start_env()
    assert env["CORRAL_TEST_VAR"] == "kept"
    assert env["PATH"] == startenv.start_path()


def test_a_config_whose_hooks_do_not_set_path_is_written_again() -> None:
    old = "lxc.hook.post-stop = /bin/sh -c 'umount /x/run/rootfs'\n"
    new = ("lxc.hook.post-stop = /bin/sh -c 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
           "/usr/bin:/sbin:/bin; umount /x/run/rootfs'\n")
    assert _stale_config(old)
    assert not _stale_config(new)
    assert _stale_config(new + "lxc.mount.entry = /a b none bind 0 0\n")
