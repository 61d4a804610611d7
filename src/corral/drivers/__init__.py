"""Runtimes behind one Protocol: lxc (containers), qemu (VMs), fake (tests)."""
