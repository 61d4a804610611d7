"""A NIC's byte counters as sysfs gives them (a tree like /sys/class/net in tmp_path)."""

from __future__ import annotations

from pathlib import Path

from corral.host.netcounters import byte_counters, counters


def test_byte_counters_are_the_rx_and_tx_bytes_and_zero_for_a_gone_nic(tmp_path: Path) -> None:
    stats = tmp_path / "veth-x" / "statistics"
    stats.mkdir(parents=True)
    for key, value in (("rx_bytes", 1234567890123), ("tx_bytes", 42), ("rx_packets", 7),
                       ("tx_packets", 8)):
        (stats / key).write_text(f"{value}\n")
    assert byte_counters("veth-x", str(tmp_path)) == (1234567890123, 42)
    full = counters("veth-x", tmp_path)
    assert (full["rx_bytes"], full["tx_bytes"]) == byte_counters("veth-x", str(tmp_path))
    assert byte_counters("gone", str(tmp_path)) == (0, 0)
    (stats / "tx_bytes").write_text("garbage\n")
    assert byte_counters("veth-x", str(tmp_path)) == (1234567890123, 0)
