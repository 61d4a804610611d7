"""Reading a process's parent and its network namespace's addresses from /proc files."""

from __future__ import annotations

import os
from pathlib import Path

from corral.host.procfs import netns_addresses, parent_of, parse_fib_trie, parse_if_inet6

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.0.3.0/24 2 0 2
        |-- 10.0.3.0
           /24 link UNICAST
        |-- 10.0.3.15
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.0.3.15
           /32 host LOCAL
        |-- 10.0.3.255
           /32 link BROADCAST
"""

IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000015 02 40 00 80     eth0
fe80000000000000021633fffe000001 02 40 20 80     eth0
"""


def test_local_ipv4_addresses_once_without_loopback_or_broadcast() -> None:
    assert parse_fib_trie(FIB_TRIE) == ["10.0.3.15"]


def test_global_ipv6_addresses_only() -> None:
    assert parse_if_inet6(IF_INET6) == ["2001:db8::15"]


def test_parent_of_reads_past_a_command_name_with_spaces_and_parentheses(tmp_path: Path
                                                                          ) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (a) (b c) S 7 42 42 0 -1 4194560\n")
    assert parent_of(42, tmp_path) == 7
    assert parent_of(43, tmp_path) is None


def test_this_process_against_the_real_proc() -> None:
    assert parent_of(os.getpid()) == os.getppid()
    assert "127.0.0.1" not in netns_addresses(os.getpid())
    assert netns_addresses(2**22 + 1) == []  # above pid_max: no such process
