"""Corral: VMs and system containers behind one model."""

__version__ = "0.1.0"
