"""The QEMU driver: VMs booted from a template's kernel and an ext4 root disk."""

from corral.drivers.qemu.driver import QemuDriver

__all__ = ["QemuDriver"]
