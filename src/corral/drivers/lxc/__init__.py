"""The LXC driver: system containers through the lxc-* tools."""

from corral.drivers.lxc.driver import LxcDriver

__all__ = ["LxcDriver"]
