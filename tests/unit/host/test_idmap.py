"""Subordinate id ranges and the host setup step that adds root's."""

from __future__ import annotations

from pathlib import Path

from corral.host.idmap import (
    IdRange,
    ensure_root_range,
    parse_subid,
    pick_range,
    root_idmap,
    unprivileged_possible,
    user_namespaces_allowed,
)


def test_parse_picks_root_by_name_or_uid_and_skips_junk() -> None:
    text = (
        "# comment\n"
        "alice:165536:65536\n"
        "root:100000:1000\n"
        "broken line\n"
        "root:abc:10\n"
        "0:300000:65536\n"
        "root:400000:0\n"
    )
    assert parse_subid(text) == [IdRange(100000, 1000), IdRange(300000, 65536)]
    assert parse_subid(text, user="alice", uid=1000) == [IdRange(165536, 65536)]


def test_pick_range_needs_enough_ids_and_cuts_to_size() -> None:
    ranges = [IdRange(100000, 1000), IdRange(300000, 200000)]
    assert pick_range(ranges) == IdRange(300000, 65536)
    assert pick_range([IdRange(100000, 1000)]) is None
    assert IdRange(300000, 65536).end == 365536


def test_ensure_root_range_adds_once_and_keeps_other_entries(tmp_path: Path) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:165536:65536")  # no trailing newline
    assert root_idmap(subuid, subgid) is None

    found = ensure_root_range(subuid, subgid)
    assert found.uid == IdRange(100000, 65536)
    assert found.gid == IdRange(100000, 65536)
    assert subuid.read_text() == "alice:165536:65536\nroot:100000:65536\n"
    assert subgid.read_text() == "root:100000:65536\n"

    ensure_root_range(subuid, subgid)
    assert subuid.read_text().count("root:") == 1


def test_existing_root_range_is_used_not_replaced(tmp_path: Path) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("root:200000:65536\n")
    subgid.write_text("root:200000:131072\n")
    found = ensure_root_range(subuid, subgid)
    assert found.uid.start == 200000 and found.gid.start == 200000
    assert subuid.read_text() == "root:200000:65536\n"


def test_user_namespaces_switch(tmp_path: Path) -> None:
    knob = tmp_path / "max_user_namespaces"
    knob.write_text("0\n")
    assert not user_namespaces_allowed(knob)
    knob.write_text("15000\n")
    assert user_namespaces_allowed(knob)
    assert not user_namespaces_allowed(tmp_path / "missing")


def test_unprivileged_possible_explains_why_not(tmp_path: Path) -> None:
    subuid, subgid, knob = tmp_path / "subuid", tmp_path / "subgid", tmp_path / "knob"
    subuid.write_text("")
    subgid.write_text("")
    knob.write_text("0")
    ok, why = unprivileged_possible(subuid, subgid, knob)
    assert not ok and "user namespaces are disabled" in why
    knob.write_text("100")
    ok, why = unprivileged_possible(subuid, subgid, knob)
    assert not ok and "subordinate id range" in why
    ensure_root_range(subuid, subgid)
    assert unprivileged_possible(subuid, subgid, knob) == (True, "")
